"""`smoe eopt`, `smoe fit-law`: thin wrappers over the theory library (`smoe fit` lives in smoe/fit/cli.py).

Choices (regime, form) are validated by the library rather than by argparse `choices=`, so that
every bad argument ends as one InputError line on stderr and exit code 2 (smoe/cli.py does that).
The --json keys are a contract documented in theory/README.md; keep them stable.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from theory.cost_model import CostModel
from theory.eopt import e_opt_closed_form, e_opt_integer, e_opt_numeric, feasible_experts
from theory.errors import InputError
from theory.law_data import load_law_csv, parse_columns
from theory.loss_laws import FORMS, UnderdeterminedFit, fit_law


def register(subparsers) -> None:
    eopt = subparsers.add_parser("eopt", help="S(E) over feasible E and the optimal expert count")
    eopt.add_argument("--d", type=int, required=True, help="embedding width d0")
    eopt.add_argument("--seq", type=int, required=True, help="sequence length L")
    eopt.add_argument("--seq-reduced", type=int, default=None, help="L' after the pre-expert layer (default L)")
    eopt.add_argument("--alpha", type=float, required=True, help="overhead coefficient of alpha*E^2 (MACs)")
    eopt.add_argument("--regime", default="parallel", help="work (MACs summed over experts) or parallel (per device)")
    eopt.add_argument("--heads", type=int, default=1, help="heads per expert slice must divide d0/E evenly")
    eopt.add_argument("--ffn-mult", type=float, default=None, help="add FFN terms with this hidden multiple")
    eopt.add_argument("--latency", type=float, default=0.0, help="linear per-expert cost latency*E (MACs)")
    eopt.add_argument("--max-devices", type=int, default=None, help="upper bound on E (one expert per device group)")
    eopt.add_argument("--no-pre", action="store_true", help="leave out the E-independent pre-expert terms")
    eopt.add_argument("--attention-topk", type=int, default=None,
                      help="learned sparse attention: each query scores k selected keys (default: all, dense)")
    eopt.add_argument("--indexer-heads", type=int, default=None, help="H_I of the sparse attention's indexer")
    eopt.add_argument("--indexer-dim", type=int, default=None, help="d_I of the sparse attention's indexer")
    eopt.add_argument("--attention-in", default="all", help="where attention is sparse: all, pre or experts")
    eopt.add_argument("--json", action="store_true", help="print JSON: e_opt, e_opt_integer, table")
    eopt.set_defaults(func=_run_eopt)

    law = subparsers.add_parser(
        "fit-law", help="fit a loss scaling law (Huber on log-residuals, L-BFGS)",
        description="Fit a loss law to a CSV. Columns are read by name: N, D, loss (clark: N, E, loss; granularity: "
                    "N, D, G, loss). --columns maps other headers, and C (training FLOPs) may replace D, which is "
                    "then C / (6 N). The committed Chinchilla points: smoe fit-law "
                    "theory/data/chinchilla_svg_extracted.csv --columns 'N=Model Size,C=Training FLOP'.")
    law.add_argument("data", help="CSV with N, D, loss (clark: N, E, loss; granularity: N, D, G, loss)")
    law.add_argument("--columns", default=None, metavar="NAME=HEADER,...",
                     help="CSV headers for the law's columns, e.g. 'N=params,D=tokens,loss=final_loss'; "
                          "C=HEADER gives training FLOPs instead of D (D = C / 6N)")
    law.add_argument("--form", default="chinchilla", help=f"one of {tuple(FORMS)}")
    law.add_argument("--bootstrap", type=int, default=100, help="bootstrap replicates (0: no intervals)")
    law.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    law.add_argument("--seed", type=int, default=0)
    law.add_argument("--json", action="store_true", help="print JSON: params, ci")
    law.add_argument("--quiet", action="store_true",
                     help="no bootstrap progress bar (it shows on stderr only when that is a terminal)")
    law.set_defaults(func=_run_fit_law)


def _run_eopt(args: argparse.Namespace) -> int:
    model = CostModel(
        d0=args.d, seq_len=args.seq, seq_reduced=args.seq_reduced, alpha=args.alpha, heads=args.heads,
        regime=args.regime, ffn_mult=args.ffn_mult, include_pre=not args.no_pre, latency=args.latency,
        attention_topk=args.attention_topk, indexer_heads=args.indexer_heads, indexer_dim=args.indexer_dim,
        attention_in=args.attention_in,
    )
    candidates = feasible_experts(model.d0, model.heads, args.max_devices)
    table = [{"E": e, "S": float(model.total(e))} for e in candidates]
    e_cont, e_int = e_opt_numeric(model), e_opt_integer(model, args.max_devices)
    if args.json:
        print(json.dumps({"e_opt": e_cont, "e_opt_integer": e_int, "table": table}))
        return 0
    traditional = model.traditional()
    print(f"regime={model.regime}  d0={model.d0}  L={model.seq_len}  L'={model.l_reduced}  alpha={model.alpha:g}")
    if model.attention_topk is not None:
        print(f"sparse attention in {model.attention_in}: k={model.attention_topk} (k/L'="
              f"{model.attention_topk / model.l_reduced:.3g}), indexer H_I={model.indexer_heads} d_I={model.indexer_dim}; "
              "S/S_trad is against the dense layer")
    print(f"{'E':>6} {'S(E) [MACs]':>14} {'S/S_trad':>9}")
    for row in table:
        mark = "  <- best feasible" if row["E"] == e_int else ""
        print(f"{row['E']:>6} {row['S']:>14.4e} {row['S'] / traditional:>9.3f}{mark}")
    forms = [("qkv", e_opt_closed_form(model, "qkv"))]
    if model.regime == "parallel":
        forms.append(("attention", e_opt_closed_form(model, "attention")))
    print(f"E_opt (numeric, continuous) = {e_cont:.4g}; best feasible integer = {e_int}")
    print("closed forms: " + ", ".join(f"{name}-dominated {value:.4g}" for name, value in forms))
    return 0


def fmt_ci(ci) -> str:
    """An interval; a JSON null bound is +inf (an E_opt interval that reaches "more experts always faster")."""
    if ci is None:
        return "n/a"
    return "[" + ", ".join("inf" if bound is None else f"{bound:.4g}" for bound in ci) + "]"


def _run_fit_law(args: argparse.Namespace) -> int:
    if args.form not in FORMS:
        raise InputError(f"--form must be one of {tuple(FORMS)}, got {args.form!r}")
    data = load_law_csv(args.data, FORMS[args.form].features, parse_columns(args.columns))
    with warnings.catch_warnings():
        # Printed below as one line each, not as Python's two-line warning.
        warnings.simplefilter("ignore", UnderdeterminedFit)
        result = fit_law(args.form, data, bootstrap=args.bootstrap, confidence=args.confidence, seed=args.seed,
                         progress=not args.quiet)
    for note in result.warnings:
        print(f"smoe: warning: fit-law: {note}", file=sys.stderr)
    if args.json:
        full = result.to_json()
        print(json.dumps({"params": full["params"], "ci": full["ci"]}))
        return 0
    print(f"form={result.form}  points={result.n_points}  Huber objective={result.objective:.6g}")
    for name, value in result.params.items():
        print(f"  {name:>6} = {value:.5g}  CI {fmt_ci(None if result.ci is None else result.ci[name])}")
    if result.ci is None:
        print("intervals n/a: " + ("--bootstrap 0" if args.bootstrap == 0 else "the fit is underdetermined"))
    return 0
