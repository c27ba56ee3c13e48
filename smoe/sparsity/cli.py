"""`smoe sparsity collect|fit|eval`: predictor-based contextual sparsity on a trained run.

Registration stays jax-free: handlers import the jax modules when they run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smoe.sparsity.layout import CRITERIA, MODES, PREDICTORS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sparsity", help="per-input head/neuron pruning with learned predictors",
                                   description=__doc__)
    actions = parser.add_subparsers(dest="sparsity_command", required=True)
    collect = actions.add_parser("collect", help="importance targets and predictor inputs from a trained run")
    collect.add_argument("run_dir", help="a `smoe train --out` directory")
    collect.add_argument("--out", required=True, metavar="DATA_DIR", help="new directory for the dataset")
    collect.add_argument("--criterion", choices=CRITERIA, default="plainact")
    collect.add_argument("--windows", type=int, default=512, help="train-split windows to score (default 512)")
    collect.add_argument("--force", action="store_true", help="replace a previous dataset in --out")
    collect.set_defaults(func=_collect)

    fit = actions.add_parser("fit", help="fit a ShadowLLM- or DejaVu-style predictor; prints Spearman rho")
    fit.add_argument("run_dir")
    fit.add_argument("data_dir", help="a `smoe sparsity collect --out` directory")
    fit.add_argument("--predictor", choices=PREDICTORS, required=True)
    fit.add_argument("--out", required=True, metavar="PRED_DIR")
    fit.add_argument("--hidden", type=int, default=None, help="MLP hidden width (default d_model)")
    fit.add_argument("--epochs", type=int, default=100)
    fit.add_argument("--force", action="store_true", help="replace a previous predictor in --out")
    fit.set_defaults(func=_fit)

    ev = actions.add_parser("eval", help="val bpb, kept units and latency at one sparsity")
    ev.add_argument("run_dir")
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictor-dir", type=Path, metavar="PRED_DIR")
    source.add_argument("--oracle", action="store_true", help="select with the criterion's own gradient scores")
    ev.add_argument("--criterion", choices=CRITERIA, default="plainact", help="the oracle's criterion")
    ev.add_argument("--sparsity", type=float, required=True, help="share of heads and neurons pruned per layer")
    ev.add_argument("--mode", choices=MODES, default="gather", help="mask (oracle FLOPs) or gather (real skipping)")
    ev.add_argument("--batches", type=int, default=4, help="val batches of 8 windows")
    ev.add_argument("--repeats", type=int, default=20, help="timed turns of each latency program")
    ev.add_argument("--no-latency", action="store_true", help="score val bpb only, time nothing")
    ev.add_argument("--json", action="store_true", help="print one JSON line")
    ev.set_defaults(func=_eval)


def _collect(args: argparse.Namespace) -> int:
    from smoe.sparsity.dataset import collect

    print(json.dumps(collect(Path(args.run_dir), Path(args.out), args.criterion, args.windows, force=args.force)))
    return 0


def _fit(args: argparse.Namespace) -> int:
    from smoe.errors import UserError
    from smoe.sparsity.fit import fit

    if args.hidden is not None and args.hidden < 1:
        raise UserError(f"--hidden: must be >= 1, got {args.hidden}")
    print(json.dumps(fit(Path(args.run_dir), Path(args.data_dir), args.predictor, Path(args.out), args.hidden,
                         args.epochs, args.force)))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from smoe.sparsity.evaluate import evaluate

    result = evaluate(Path(args.run_dir), args.sparsity, args.mode, args.predictor_dir, args.oracle, args.criterion,
                      batches=args.batches, repeats=args.repeats, latency=not args.no_latency)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0
