"""`smoe train CONFIG.yaml [--set k=v ...] --out DIR [--resume | --resume-from STEP | --extend]
[--processes N | --distributed]`.

Exit codes: 0 done, 2 bad input (one line on stderr), 3 training diverged (the message names the
last finite checkpoint), 130 interrupted (resume with the command it prints)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from smoe import launch
from smoe.config import load_config
from smoe.errors import INTERRUPTED_EXIT, interrupted


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train one model on real text",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML run config (sections model, mesh, data, train)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value; repeatable")
    parser.add_argument("--out", required=True, help="run directory: config, metrics.jsonl, tensorboard/, checkpoints/")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--resume-from", type=int, metavar="STEP",
                        help="continue from the checkpoint at STEP (e.g. when the latest is damaged); "
                             "later checkpoints are dropped and rewritten")
    parser.add_argument("--extend", action="store_true",
                        help="continue a run to a larger --set train.steps=N; the learning-rate schedule "
                             "keeps its original length and the extra steps run at its final rate")
    parser.add_argument("--init-from", metavar="RUN_DIR",
                        help="start from the latest weights of the run in RUN_DIR (e.g. the dense run before "
                             "train.stage indexer_warmup or sparse); weights it lacks (indexers) start fresh")
    parser.add_argument("--processes", type=int, default=1,
                        help="start N local processes joined by jax.distributed (gloo over loopback)")
    parser.add_argument("--distributed", action="store_true",
                        help="on a cluster: jax.distributed.initialize() with auto-detection")
    parser.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                        help="no progress bar (it shows on stderr only when that is a terminal)")
    for hidden in ("--coordinator", "--num-processes", "--process-id"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _worker_argv(args: argparse.Namespace) -> list[str]:
    argv = ["train", args.config, "--out", args.out]
    for override in args.set:
        argv += ["--set", override]
    argv += ["--init-from", args.init_from] if args.init_from else []
    if args.resume_from is not None:
        argv += ["--resume-from", str(args.resume_from)]
    flags = [flag for flag, given in (("--resume", args.resume), ("--extend", args.extend),
                                      ("--no-progress", args.no_progress)) if given]
    return argv + flags


def _resume_command(args: argparse.Namespace) -> str:
    sets = "".join(f" --set {shlex.quote(override)}" for override in args.set)
    again = " --extend" if args.extend else " --resume"
    return f"smoe train {shlex.quote(args.config)} --out {shlex.quote(args.out)}{sets}{again}"


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
        result = train(cfg, args.out, resume=args.resume, progress=not args.no_progress,
                       resume_from=args.resume_from, extend=args.extend, init_from=args.init_from)
    except TrainingDiverged as err:
        print(f"smoe: error: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        # Checkpoints are committed atomically, so the run resumes from its latest one.
        if args.process_id and int(args.process_id) != 0:
            return INTERRUPTED_EXIT
        interrupted(_resume_command(args))
    import jax

    if jax.process_index() == 0:
        summary = {"train_loss": result["train"]["loss"].item(), **{f"eval_{k}": v for k, v in result["eval"].items()}}
        print(json.dumps(summary))
    return 0
