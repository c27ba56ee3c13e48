"""Every `smoe` command builds the same parser; building it must not pay for importing jax/flax."""

import subprocess
import sys


def test_building_the_cli_imports_neither_jax_nor_flax():
    code = ("import sys; from smoe.cli import _build_parser; _build_parser(); "
            "print(sorted(m for m in ('jax', 'flax') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_accounting_point_parsing_and_sweep_kinds_are_jax_free():
    code = ("import sys; import smoe.accounting, smoe.measure.point, smoe.sweep.kinds as k; k.kind_for('train'); "
            "print(sorted(m for m in ('jax', 'flax') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
