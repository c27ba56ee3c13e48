"""`smoe train CONFIG.yaml [--set k=v ...] --out DIR [--resume] [--processes N | --distributed]`."""

from __future__ import annotations

import argparse
import json
import sys

from smoe import launch
from smoe.config import load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train one model on real text",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML run config (sections model, mesh, data, train)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value; repeatable")
    parser.add_argument("--out", required=True, help="run directory: config, metrics.jsonl, tensorboard/, checkpoints/")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--init-from", metavar="RUN_DIR",
                        help="start from the latest weights of the run in RUN_DIR (e.g. the dense run before "
                             "train.stage indexer_warmup or sparse); weights it lacks (indexers) start fresh")
    parser.add_argument("--processes", type=int, default=1,
                        help="start N local processes joined by jax.distributed (gloo over loopback)")
    parser.add_argument("--distributed", action="store_true",
                        help="on a cluster: jax.distributed.initialize() with auto-detection")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for hidden in ("--coordinator", "--num-processes", "--process-id"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _worker_argv(args: argparse.Namespace) -> list[str]:
    argv = ["train", args.config, "--out", args.out]
    for override in args.set:
        argv += ["--set", override]
    argv += ["--init-from", args.init_from] if args.init_from else []
    return argv + (["--resume"] if args.resume else []) + (["--no-progress"] if args.no_progress else [])


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    if args.processes > 1:
        return launch.launch_local(_worker_argv(args), args.processes, cfg.mesh.size)
    if args.coordinator:
        launch.init_worker(args.coordinator, int(args.num_processes), int(args.process_id))
    elif args.distributed:
        launch.init_cluster()
    else:
        launch.emulate_cpu_devices(cfg.mesh.size)
    from smoe.train import TrainingDiverged, train

    try:
        result = train(cfg, args.out, resume=args.resume, progress=not args.no_progress, init_from=args.init_from)
    except TrainingDiverged as err:
        print(f"smoe train: {err}", file=sys.stderr)
        return 3
    import jax

    if jax.process_index() == 0:
        summary = {"train_loss": result["train"]["loss"].item(), **{f"eval_{k}": v for k, v in result["eval"].items()}}
        print(json.dumps(summary))
    return 0
