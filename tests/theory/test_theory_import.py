"""theory must stay jax-free so that it imports instantly and works on its own."""

import subprocess
import sys
from pathlib import Path

import theory


def test_importing_theory_and_its_cli_does_not_import_jax():
    root = Path(theory.__file__).resolve().parent.parent
    code = "import sys, theory, theory.cli; print('jax' in sys.modules, 'flax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
