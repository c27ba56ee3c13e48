"""Loss scaling-law fits: Chinchilla L(N, D), Clark et al. 2022 L(N, E), Krajewski et al. 2024 L(N, D, G).

Method of Hoffmann et al. 2022 as replicated by Besiroglu et al. 2024: minimise the Huber loss
(delta = 1e-3) of log-residuals, summed over points, with L-BFGS. Positive coefficients are
fitted as their logs so the predicted loss is a log-sum-exp of power-law terms, with an exact
gradient. Instead of running L-BFGS from every point of the initialisation grid, we evaluate the
objective on the whole grid and run L-BFGS from the best few points (the grid exists only to
avoid poor basins, and the best grid points are where those runs end up winning).
"""

from __future__ import annotations

import itertools
import math
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax
from tqdm import tqdm

from theory.errors import InputError

HUBER_DELTA = 1e-3
# Beyond these the data no longer pin the parameters down. Measured on the 245 Chinchilla reference
# points the Jacobian's condition number is ~2e3; 11 points clustered within 1% in N and D give ~1e10.
CONDITION_LIMIT = 1e6
MAX_LOG_COEFFICIENT = 50.0  # a coefficient above e^50 ~ 5e21 only cancels another term
MAX_EXPONENT = 5.0


class UnderdeterminedFit(UserWarning):
    """The fitted parameters are not identified by the data (flat or degenerate objective)."""


@dataclass(frozen=True)
class LawForm:
    """A law as internal parameters theta (logs of positive coefficients, exponents as is).

    Every form is log L = logsumexp_j (M[:, j, :] @ theta) for a design tensor M fixed by the data,
    which gives the exact Jacobian and lets the initialisation grid be evaluated in one batch.
    terms: for a sum of power laws, each term j is (log-coefficient index, ((exponent index, feature), ...))
    and contributes exp(theta[coef] - sum theta[exp] * log X[feature]). None marks Clark et al.'s law,
    which is linear in log space (a single term).
    """

    name: str
    internal: tuple[str, ...]
    features: tuple[str, ...]
    grid: tuple[tuple[float, ...], ...]
    log_params: frozenset[str] = field(default_factory=frozenset)
    terms: tuple | None = None

    def public(self, theta: np.ndarray) -> dict[str, float]:
        return {
            (n[4:] if n.startswith("log_") else n): float(math.exp(t) if n in self.log_params else t)
            for n, t in zip(self.internal, theta)
        }

    def design(self, log_x: dict[str, np.ndarray]) -> np.ndarray:
        """M with shape (points, terms, parameters)."""
        if self.terms is None:
            # log L = a log N + b log E + c log N log E + d  (Clark et al. 2022, eq. 1, natural logs)
            ln, le = log_x["N"], log_x["E"]
            return np.stack([ln, le, ln * le, np.ones_like(ln)], axis=1)[:, None, :]
        n = next(iter(log_x.values())).size
        m = np.zeros((n, len(self.terms), len(self.internal)))
        for j, (coef, powers) in enumerate(self.terms):
            m[:, j, coef] = 1.0
            for exp_idx, feature in powers:
                m[:, j, exp_idx] = -log_x[feature]
        return m


_EXP = (0.0, 0.5, 1.0, 1.5, 2.0)
_LOGC = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
FORMS = {
    # Hoffmann et al. 2022 grid: e in {-1..1.5}, a, b in {0..25}, alpha, beta in {0..2}.
    "chinchilla": LawForm(
        name="chinchilla",
        internal=("log_E", "log_A", "log_B", "alpha", "beta"),
        features=("N", "D"),
        grid=((-1.0, -0.5, 0.0, 0.5, 1.0, 1.5), _LOGC, _LOGC, _EXP, _EXP),
        log_params=frozenset({"log_E", "log_A", "log_B"}),
        terms=((0, ()), (1, ((3, "N"),)), (2, ((4, "D"),))),
    ),
    "clark": LawForm(
        name="clark",
        internal=("a", "b", "c", "d"),
        features=("N", "E"),
        grid=((-0.1, 0.0), (-0.1, 0.0), (0.0,), (0.0, 1.0, 2.0)),
    ),
    # Krajewski et al. 2024: L = c + (g / G^gamma + a) N^-alpha + b D^-beta.
    "granularity": LawForm(
        name="granularity",
        internal=("log_c", "log_g", "log_a", "log_b", "gamma", "alpha", "beta"),
        features=("N", "D", "G"),
        grid=((-1.0, 0.0, 0.5), (0.0, 5.0, 10.0), (0.0, 5.0, 10.0), (0.0, 5.0, 10.0), (0.1, 0.5, 1.0), (0.2, 0.5, 1.0), (0.2, 0.5, 1.0)),
        log_params=frozenset({"log_c", "log_g", "log_a", "log_b"}),
        terms=((0, ()), (1, ((4, "G"), (5, "N"))), (2, ((5, "N"),)), (3, ((6, "D"),))),
    ),
}


@dataclass(frozen=True)
class LawFit:
    """Fitted public parameters, percentile-bootstrap intervals (None with bootstrap=0)."""

    form: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]] | None
    objective: float
    n_points: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "form": self.form,
            "params": self.params,
            "ci": None if self.ci is None else {k: list(v) for k, v in self.ci.items()},
            "objective": self.objective,
            "n_points": self.n_points,
            "warnings": list(self.warnings),
        }


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    return np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))


def _objective(theta, design, log_loss, delta: float):
    exponents = design @ theta
    r = logsumexp(exponents, axis=1) - log_loss
    jac = np.einsum("nj,njp->np", softmax(exponents, axis=1), design)
    return float(_huber(r, delta).sum()), jac.T @ np.clip(r, -delta, delta)


def _grid_objectives(grid: np.ndarray, design, log_loss, delta: float, chunk: int = 512) -> np.ndarray:
    out = []
    for i in range(0, len(grid), chunk):
        exponents = np.einsum("njp,gp->gnj", design, grid[i : i + chunk])
        out.append(_huber(logsumexp(exponents, axis=2) - log_loss, delta).sum(axis=1))
    return np.concatenate(out)


def _minimise(starts, design, log_loss, delta) -> tuple[np.ndarray, float]:
    best_theta, best_value = None, math.inf
    for start in starts:
        res = minimize(
            _objective, start, args=(design, log_loss, delta), jac=True, method="L-BFGS-B",
            options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12},
        )
        if res.fun < best_value:
            best_theta, best_value = res.x, float(res.fun)
    return best_theta, best_value


def identifiability_problems(law: LawForm, theta: np.ndarray, design: np.ndarray) -> list[str]:
    """Why the fit at theta is not determined by the data: an ill-conditioned Jacobian of the
    log-loss predictions, or parameters that ran off to where a term no longer behaves as a law."""
    jac = np.einsum("nj,njp->np", softmax(design @ theta, axis=1), design)
    cond = float(np.linalg.cond(jac))
    problems = [] if math.isfinite(cond) and cond <= CONDITION_LIMIT else [f"condition number {cond:.1e}"]
    if law.terms is not None:
        for name, value in zip(law.internal, theta):
            if name in law.log_params and abs(value) > MAX_LOG_COEFFICIENT:
                problems.append(f"{name[4:]} = {math.exp(value):.3g}")
            elif name not in law.log_params and not 0.0 < value <= MAX_EXPONENT:
                problems.append(f"{name} = {value:.3g} outside (0, {MAX_EXPONENT:g}]")
    return problems


def _validated_logs(form: LawForm, data: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    missing = [k for k in (*form.features, "loss") if k not in data]
    if missing:
        raise InputError(f"form {form.name!r} needs columns {[*form.features, 'loss']}; missing {missing}")
    arrays = {k: np.asarray(data[k], dtype=float).ravel() for k in (*form.features, "loss")}
    n = arrays["loss"].size
    for k, v in arrays.items():
        if v.size != n:
            raise InputError(f"column {k} has {v.size} values but loss has {n}; give one per point")
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise InputError(f"column {k} must be finite and > 0 in every row; drop the bad rows")
    if n <= len(form.internal):
        raise InputError(f"form {form.name!r} has {len(form.internal)} parameters; need more than that many points, got {n}")
    return {k: np.log(arrays[k]) for k in form.features}, np.log(arrays["loss"])


def fit_law(
    form: str,
    data: dict[str, np.ndarray],
    *,
    bootstrap: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
    delta: float = HUBER_DELTA,
    n_starts: int = 8,
    progress: bool = True,
) -> LawFit:
    """Fit `form` (a key of FORMS) to data columns (its features and loss). The bootstrap bar shows on
    stderr only when that is a terminal and `progress` is set."""
    if form not in FORMS:
        raise InputError(f"form must be one of {tuple(FORMS)}, got {form!r}")
    if bootstrap < 0 or not (0.0 < confidence < 1.0):
        raise InputError(f"need bootstrap >= 0 and 0 < confidence < 1, got {bootstrap}, {confidence}")
    law = FORMS[form]
    log_x, log_loss = _validated_logs(law, data)
    design = law.design(log_x)
    grid = np.array(list(itertools.product(*law.grid)))
    starts = grid[np.argsort(_grid_objectives(grid, design, log_loss, delta))[:n_starts]]
    theta, value = _minimise(starts, design, log_loss, delta)
    notes = []
    problems = identifiability_problems(law, theta, design)
    if problems:
        # Intervals of an unidentified fit mean nothing, and its replicates are the slow ones.
        notes.append(f"{form} fit is underdetermined ({', '.join(problems)}): the data do not pin down its "
                     f"parameters; add points spread over a wider range of {', '.join(law.features)}"
                     + ("; bootstrap intervals skipped" if bootstrap else ""))
        warnings.warn(notes[-1], UnderdeterminedFit, stacklevel=2)

    ci = None
    if bootstrap > 0 and not problems:
        rng = np.random.default_rng(seed)
        n = log_loss.size
        samples = []
        for _ in tqdm(range(bootstrap), desc=f"{form} bootstrap", unit="fit", disable=None if progress else True, leave=False,
                      file=sys.stderr):
            idx = rng.integers(0, n, size=n)
            # Each replicate starts at the full-data optimum: it is the basin the replicate perturbs.
            boot_theta, _ = _minimise([theta], design[idx], log_loss[idx], delta)
            samples.append(list(law.public(boot_theta).values()))
        tail = (1.0 - confidence) / 2.0
        lo, hi = np.quantile(np.array(samples), [tail, 1.0 - tail], axis=0)
        ci = {name: (float(a), float(b)) for name, a, b in zip(law.public(theta), lo, hi)}
    return LawFit(form=form, params=law.public(theta), ci=ci, objective=value, n_points=int(log_loss.size),
                  warnings=tuple(notes))


def fit_chinchilla(n_params, tokens, loss, **kwargs) -> LawFit:
    """L(N, D) = E + A / N^alpha + B / D^beta."""
    return fit_law("chinchilla", {"N": n_params, "D": tokens, "loss": loss}, **kwargs)


def fit_clark(n_params, experts, loss, **kwargs) -> LawFit:
    """log L = a log N + b log E + c log N log E + d (the unsaturated form of Clark et al. 2022)."""
    return fit_law("clark", {"N": n_params, "E": experts, "loss": loss}, **kwargs)


def fit_granularity(n_params, tokens, granularity, loss, **kwargs) -> LawFit:
    """L = c + (g / G^gamma + a) / N^alpha + b / D^beta (Krajewski et al. 2024)."""
    return fit_law("granularity", {"N": n_params, "D": tokens, "G": granularity, "loss": loss}, **kwargs)
