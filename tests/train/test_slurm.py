"""`smoe train --distributed` and `smoe measure --distributed` in a simulated SLURM allocation: two
local processes whose only coordinates are the SLURM variables `jax.distributed.initialize()` reads;
the losses equal one process's, and the measurement's record comes from both processes together."""

import json
import os
import socket
import subprocess
import sys

import pytest

from smoe.train import train
from tests.train.helpers import last_json_line, run_config, tiny_run, write_config

# jax's SLURM cluster detection puts the coordinator on the node list's first host, at this port
# plus the job id modulo 2**12 (jax/_src/clusters/slurm_cluster.py)
SLURM_PORT_BASE = 65535 - 2**12 + 1


def _free_slurm_job_id() -> int:
    for port in range(SLURM_PORT_BASE + os.getpid() % 2**11, 65536):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port - SLURM_PORT_BASE
    raise RuntimeError("no free port for the simulated SLURM coordinator")


def _under_slurm(cli_args: list[str], tasks: int = 2) -> list[str]:
    """`python -m smoe.cli *cli_args` as the `tasks` processes of a one-node SLURM job step, one
    CPU device each; returns their stdouts after checking that all of them succeeded."""
    slurm = {"SLURM_JOB_ID": str(_free_slurm_job_id()), "SLURM_NTASKS": str(tasks),
             "SLURM_STEP_NODELIST": "localhost", "SLURM_JOB_NODELIST": "localhost", "SLURM_STEP_NUM_NODES": "1",
             "SLURM_NNODES": "1"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMI_"))}
    env |= slurm | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    argv = [sys.executable, "-m", "smoe.cli", *cli_args]
    children = [subprocess.Popen(argv, env=env | {"SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(tasks)]
    outputs = [child.communicate(timeout=600) for child in children]
    for child, (_, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr[-3000:]
    assert all(stdout.strip() == "" for stdout, _ in outputs[1:]), "only process 0 prints"
    return [stdout for stdout, _ in outputs]


def test_simulated_slurm_allocation_trains_like_one_process(shakespeare, tmp_path):
    raw = tiny_run(mesh={"data": 2, "expert": 1}, train={"steps": 2, "checkpoint_every": 2})
    config = write_config(tmp_path / "run.yaml", raw)
    single = train(run_config(raw), tmp_path / "single", progress=False)
    stdout = _under_slurm(["train", str(config), "--out", str(tmp_path / "slurm"), "--distributed", "--no-progress"])[0]
    assert len(stdout.strip().splitlines()) == 1, stdout  # the summary
    multi = last_json_line(stdout)
    assert multi["train_loss"] == pytest.approx(float(single["train"]["loss"]), rel=1e-5)
    assert multi["eval_ce"] == pytest.approx(single["eval"]["ce"], rel=1e-5)


def test_simulated_slurm_allocation_measures_one_point_across_both_processes(tmp_path):
    point = tmp_path / "point.yaml"
    point.write_text("{E: 2, d: 32, L: 16, batch: 4, n_layers: 2, pre_layers: 1, n_heads: 2, devices: 2, repeats: 1}\n")
    stdout = _under_slurm(["measure", str(point), "--json", "--distributed"])[0]
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout  # one point, one record
    record = json.loads(lines[0])
    assert record["process_count"] == 2 and record["device_count"] == 2
    assert (record["mesh_data"], record["mesh_expert"]) == (1, 2)
    assert record["exchange.collectives.all-to-all"] == 2  # the experts really live on both processes
    assert record["train_step.median_s"] > 0
