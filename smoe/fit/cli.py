"""`smoe fit MEAS.csv|DIR`: the one registration of the fit command.

A file (CSV or JSON lines of E, seconds[, component]) is one series; a `smoe sweep` DIR is fitted
group by group (smoe/fit/sweep.py) and gets fit.json and fit.png. Both print the keys documented
in theory/README.md. Choices are validated by theory (one InputError line, exit 2), not argparse.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from theory.cli import fmt_ci
from theory.cost_fit import BASES
from theory.overhead_laws import OVERHEAD_CHOICES


def register(subparsers) -> None:
    fit = subparsers.add_parser("fit", help="fit S(E) with each overhead law to measured seconds(E); verdict on E_opt")
    fit.add_argument("measurements", help="CSV (header with E, seconds), JSON lines, or a `smoe sweep` DIR")
    fit.add_argument("--overhead", default="auto",
                     help=f"overhead law: one of {OVERHEAD_CHOICES} (auto: chosen by leave-one-E-out error)")
    fit.add_argument("--holdout-above", type=int, default=None, help="fit E <= this, report MAPE on larger E")
    fit.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (0: no intervals, no verdict)")
    fit.add_argument("--regime", default=None,
                     help=f"basis of the fit: one of {tuple(BASES)} (default parallel; for a sweep DIR, work on CPU)")
    fit.add_argument("--robust", action="store_true", help="soft-L1 loss instead of least squares")
    fit.add_argument("--component", default=None, help="fit only the rows of this component (file input)")
    fit.add_argument("--d", type=int, default=None, help="d0: restrict the integer E_opt to divisors of d0")
    fit.add_argument("--heads", type=int, default=1, help="with --d: (d0/E) must be divisible by heads")
    fit.add_argument("--max-devices", type=int, default=None, help="upper bound on the integer E_opt")
    fit.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--json", action="store_true", help="print JSON with the keys in theory/README.md")
    fit.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if Path(args.measurements).is_dir():
        from smoe.fit.sweep import run_cli

        return run_cli(args)
    return _run_file(args)


def _run_file(args: argparse.Namespace) -> int:
    from smoe.fit.series import fit_series
    from theory.measurements import load_measurements
    from theory.rounds import rounds_from_measurements

    data = load_measurements(args.measurements).select(args.component)
    result = fit_series(rounds_from_measurements(data.experts, data.seconds), regime=args.regime or "parallel",
                        overhead=args.overhead, bootstrap=args.bootstrap, confidence=args.confidence, seed=args.seed,
                        holdout_above=args.holdout_above, robust=args.robust, d0=args.d, heads=args.heads,
                        max_devices=args.max_devices)
    if args.json:
        print(json.dumps(result))
        return 0
    chosen = result["laws"][result["overhead_law"]]
    cis = chosen["coefficient_ci"] or {}
    print(f"regime={result['regime']}  records={data.experts.size}  overhead law={result['overhead_law']} "
          f"(of {', '.join(result['laws'])}; paired={str(result['paired']).lower()})")
    for name, value in result["coefficients"].items():
        print(f"  {name:>7} = {value:.4e}  CI {fmt_ci(cis.get(name))}")
    print(f"E_opt = {_num(result['e_opt'])}  CI {fmt_ci(result['e_opt_ci'])}  best integer = {result['e_opt_integer']}")
    for name, law in result["laws"].items():
        print(f"  law {name:>9}: leave-one-E-out error {100 * law['cv_error']:.2f}%  AICc {_num(law['aicc'])}  "
              f"E_opt {_num(law['e_opt'])}")
    if result["holdout_mape"] is not None:
        print(f"held-out MAPE (E > {args.holdout_above}) = {result['holdout_mape']:.2f}%")
    if result["verdict"] is not None:
        print(f"best measured E by the law = {result['predicted_best_e']}  measured fastest E = "
              f"{result['measured_best_e']}  tied set {result['tied_set']}  verdict: {result['verdict']}")
    return 0


def _num(value) -> str:
    return "inf" if value is None else f"{value:.4g}"
