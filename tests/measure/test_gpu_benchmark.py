"""benchmarks/gpu_mfu.py refuses the CPU unless asked, and its tiny CPU smoke run writes the full JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_mfu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)


def test_refuses_the_cpu_in_one_line(tmp_path):
    result = _run("--out", str(tmp_path / "out.json"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--allow-cpu" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_cpu_smoke_run_writes_mfu_and_ratios(tmp_path):
    out = tmp_path / "out.json"
    result = _run("--allow-cpu", "--repeats", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert [row["model"] for row in record["rows"]] == ["dense", "topk", "sectional_E1", "sectional_E4"]
    assert record["published_bf16_peak_flops"] is None and record["skipped"] == []
    dense = record["rows"][0]
    assert dense["step_time_over_dense"] == 1.0 and dense["flops_over_dense"] == 1.0
    for row in record["rows"]:
        assert row["step_s"] > 0 and row["fraction_of_measured_peak"] > 0 and row["mfu"] is None
        assert row["attention_impl"] == "xla"
    # sectional experts are narrower than the dense blocks, so they cost fewer FLOPs the more there are
    flops = [row["flops_over_dense"] for row in record["rows"][2:]]
    assert flops == sorted(flops, reverse=True) and flops[-1] < 1.0
