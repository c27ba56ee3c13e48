"""`smoe fit MEAS.csv|DIR`: the one registration of the fit command.

A file (CSV or JSON lines of E, seconds[, component]) is one series; so is one program's column of a
`smoe measure`/`smoe sweep --export` CSV (`--program NAME` reads E and NAME.samples_s, one setting at a
time). A `smoe sweep` DIR is fitted group by group (smoe/fit/sweep.py) and gets fit.json and fit.png.
Both forms read the data by one rule (READING_RULE, shown in --help). Choices are validated by theory
(one InputError line, exit 2), not argparse.
"""

from __future__ import annotations

import argparse
import csv
import json
import textwrap
from pathlib import Path

from theory.cli import fmt_ci
from theory.cost_fit import BASES
from theory.errors import InputError
from theory.overhead_laws import OVERHEAD_CHOICES

FORMS = (
    "FILE: a CSV with E and seconds columns (and optionally component), JSON lines of the same, or with "
    "--program NAME a `smoe measure` / `smoe sweep --export` CSV: one series, printed (--json: one object). "
    "DIR: a `smoe sweep` directory: every setting and program is fitted, DIR/fit.json and DIR/fit.png are "
    "(re)written.")
READING_RULE = (
    "Both forms read the data one way: the basis (--regime) is `work` when every record says backend=cpu "
    "(emulated devices share the same cores, so time follows total work), else `parallel` (a CSV without a "
    "backend column reads as parallel); the largest measured E is held out and its error reported as "
    "held-out MAPE (--holdout-above moves the cut). DIR output: one entry per setting, "
    "groups[i].fits[PROGRAM].fit, each with the keys of the file form.")


def register(subparsers) -> None:
    fit = subparsers.add_parser("fit", help="fit S(E) with each overhead law to measured seconds(E); verdict on E_opt",
                                description="\n\n".join(textwrap.fill(text, 100) for text in (FORMS, READING_RULE)),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("measurements", help="CSV (header with E, seconds), JSON lines, a `smoe measure` CSV with "
                                          "--program, or a `smoe sweep` DIR (writes DIR/fit.json and DIR/fit.png)")
    fit.add_argument("--program", default=None, metavar="NAME",
                     help="read a `smoe measure`/`smoe sweep --export` CSV: E and the NAME.samples_s column "
                          "(e.g. train_step, exchange)")
    fit.add_argument("--overhead", default="auto",
                     help=f"overhead law: one of {OVERHEAD_CHOICES} (auto: chosen by leave-one-E-out error)")
    fit.add_argument("--holdout-above", type=int, default=None,
                     help="fit E <= this, report MAPE on larger E (default: the largest E is held out)")
    fit.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (0: no intervals, no verdict)")
    fit.add_argument("--regime", default=None,
                     help=f"basis of the fit: one of {tuple(BASES)} (default: work for backend=cpu records, "
                          "else parallel)")
    fit.add_argument("--robust", action="store_true", help="soft-L1 loss instead of least squares")
    fit.add_argument("--component", default=None,
                     help="fit only the rows of this component (file input; with --program, one setting)")
    fit.add_argument("--d", type=int, default=None, help="d0: restrict the integer E_opt to divisors of d0")
    fit.add_argument("--heads", type=int, default=1, help="with --d: (d0/E) must be divisible by heads")
    fit.add_argument("--max-devices", type=int, default=None, help="upper bound on the integer E_opt")
    fit.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--json", action="store_true", help="print JSON with the keys in theory/README.md")
    fit.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if Path(args.measurements).is_dir():
        if args.program or args.component:
            raise InputError(f"--program and --component read a file; {args.measurements} is a sweep DIR, "
                             "whose every setting and program is fitted")
        from smoe.fit.sweep import run_cli

        return run_cli(args)
    return _run_file(args)


def _program_measurements(path: str, program: str):
    """One program's samples per point of a `smoe measure` CSV, each setting (all but E and the mesh) as
    a component; returns the measurements and the rows' backends."""
    from smoe.fit.sweep import group_rows
    from theory.measurements import measurements_from_records, read_measurement_text

    name, column = Path(path).name, f"{program}.samples_s"
    reader = csv.DictReader(read_measurement_text(path).splitlines())
    if not {"E", column} <= set(reader.fieldnames or ()):
        found = sorted({c.removesuffix(".samples_s") for c in reader.fieldnames or () if c.endswith(".samples_s")
                        and "." not in c.removesuffix(".samples_s")})
        raise InputError(f"{name}: --program {program}: no E and {column} columns; programs in this file: {found}")
    groups = group_rows(list(reader))
    if not groups:
        raise InputError(f"{name}: no rows with kind=sectional; give a `smoe measure` CSV")
    varying = [key for key in dict(next(iter(groups))) if len({dict(g).get(key) for g in groups}) > 1]
    records, backends = [], set()
    for setting, rows in groups.items():
        label = ",".join(f"{key}={dict(setting)[key]}" for key in varying) or None
        for i, row in enumerate(rows, start=2):
            backends.add(row.get("backend"))
            try:
                samples = json.loads(row[column])
            except json.JSONDecodeError:
                raise InputError(f"{name}: {column} of the E={row['E']} row is not a JSON list of seconds") from None
            records += [{"E": row["E"], "seconds": s, "component": label} for s in samples]
    return measurements_from_records(records, name), backends


def _run_file(args: argparse.Namespace) -> int:
    from smoe.fit.series import fit_series, slowdown_text
    from theory.measurements import load_measurements
    from theory.rounds import rounds_from_measurements

    if args.program:
        data, backends = _program_measurements(args.measurements, args.program)
    else:
        data, backends = load_measurements(args.measurements), {None}
    data = data.select(args.component)
    rounds = rounds_from_measurements(data.experts, data.seconds)
    regime = args.regime or ("work" if backends == {"cpu"} else "parallel")
    holdout = args.holdout_above
    if holdout is None and rounds.experts.size >= 3:
        holdout = int(rounds.experts[-2])
    result = fit_series(rounds, regime=regime, overhead=args.overhead, bootstrap=args.bootstrap,
                        confidence=args.confidence, seed=args.seed, holdout_above=holdout, robust=args.robust,
                        d0=args.d, heads=args.heads, max_devices=args.max_devices)
    if args.json:
        print(json.dumps(result))
        return 0
    chosen = result["laws"][result["overhead_law"]]
    cis = chosen["coefficient_ci"] or {}
    print(f"regime={result['regime']}  records={data.experts.size}  overhead law={result['overhead_law']} "
          f"(of {', '.join(result['laws'])}; paired={str(result['paired']).lower()})")
    for name, value in result["coefficients"].items():
        print(f"  {name:>7} = {value:.4e}  CI {fmt_ci(cis.get(name))}")
    best = result["e_opt_integer"]
    print(f"E_opt = {e_opt_text(result['e_opt'])}  CI {fmt_ci(result['e_opt_ci'])}  best integer = "
          + (str(best) if best is not None else "n/a (no finite E_opt; --d D0 picks among the divisors of D0)"))
    for name, law in result["laws"].items():
        print(f"  law {name:>9}: leave-one-E-out error {100 * law['cv_error']:.2f}%  AICc {_num(law['aicc'])}  "
              f"E_opt {_num(law['e_opt'])}")
    if result["holdout_mape"] is not None:
        print(f"held-out MAPE (E > {holdout}) = {result['holdout_mape']:.2f}%")
    else:
        print(f"held-out MAPE n/a: {rounds.experts.size} distinct E leave none to hold out (need 3)")
    if result["verdict"] is not None:
        print(f"best measured E by the law = {result['predicted_best_e']}  measured fastest E = "
              f"{result['measured_best_e']}  tied set {result['tied_set']}  verdict: {result['verdict']}; "
              f"{slowdown_text(result)}")
    else:
        print("verdict n/a: " + ("--bootstrap 0 gives no measured optimum" if args.bootstrap == 0
                                 else "needs at least 2 repetitions of every E"))
    return 0


def e_opt_text(value) -> str:
    """E_opt with the reason when the law has no interior minimum (JSON null is +inf)."""
    if value is None:
        return "inf (no fitted term grows with E: within this law more experts are always faster)"
    if value == 0:
        return "0 (no fitted term shrinks with E: within this law one expert is fastest)"
    return f"{value:.4g}"


def _num(value) -> str:
    return "inf" if value is None else f"{value:.4g}"
