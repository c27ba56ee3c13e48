"""Several local processes joined by `jax.distributed` over loopback, with real CPU collectives (gloo).

The same worker code runs unchanged on a GPU/TPU cluster, where `jax.distributed.initialize()`
finds the coordinator and process ids from the cluster environment (`--distributed`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from smoe.errors import INTERRUPTED_EXIT, UserError


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_processes(processes: int, mesh_size: int, key: str = "--processes") -> None:
    """The one rule for splitting a mesh over local processes: each owns the same number of devices."""
    if processes < 1 or mesh_size % processes:
        raise UserError(f"{key}: must divide the mesh size mesh.data*mesh.expert={mesh_size}, got {processes}")


def launch_local(worker_argv: list[str], processes: int, mesh_size: int, module: str = "smoe.cli") -> int:
    """Starts `processes` copies of `python -m module <worker_argv>`, each owning mesh_size/processes
    CPU devices; the module must accept --coordinator, --num-processes and --process-id."""
    check_processes(processes, mesh_size)
    coordinator = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={mesh_size // processes}")
    children = []
    for process_id in range(processes):
        argv = [sys.executable, "-m", module, *worker_argv, "--coordinator", coordinator,
                "--num-processes", str(processes), "--process-id", str(process_id)]
        children.append(subprocess.Popen(argv, env=env))
    try:
        codes = [child.wait() for child in children]
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group: the workers stop on their own and process 0 says
        # how to resume; the launcher only waits for them.
        for child in children:
            child.wait()
        return INTERRUPTED_EXIT
    return max(codes, key=abs)


def init_worker(coordinator: str, num_processes: int, process_id: int) -> None:
    _native_stdout_to_stderr()
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def _native_stdout_to_stderr() -> None:
    """Point file descriptor 1 at stderr and give Python's sys.stdout its own copy of the real stdout,
    so C++ logging (gloo's "Rank N is connected") lands on stderr and the JSON summary stays the
    only thing on stdout."""
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(real_stdout, "w", buffering=1)


def init_cluster() -> None:
    """`--distributed`: the coordinator, process count and id come from the cluster's environment
    (SLURM, Open MPI, TPU pods ...), read by `jax.distributed.initialize()`."""
    _native_stdout_to_stderr()
    import jax

    jax.distributed.initialize()


def emulate_cpu_devices(count: int) -> None:
    """Ask XLA for `count` host devices; only effective before jax initialises its backends.

    Lives here, away from anything that imports jax, so the CLI can call it before jax starts.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
