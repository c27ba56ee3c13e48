"""Theory of sectional MoE: the S(E) cost model, E_opt, timing fits and loss scaling laws.

Pure numpy/scipy (no jax), so it imports instantly and can be used on its own.
"""

from theory.cost_fit import CostFit, fit_cost_model
from theory.cost_model import CostModel
from theory.eopt import e_opt_closed_form, e_opt_integer, e_opt_numeric, feasible_experts
from theory.errors import InputError
from theory.exchange_fit import ExchangeFit, attribute_growth, fit_exchange
from theory.law_data import load_chinchilla_reference, load_law_csv
from theory.loss_laws import LawFit, fit_chinchilla, fit_clark, fit_granularity, fit_law
from theory.measurements import Measurements, load_measurements, measurements_from_records
from theory.overhead_laws import LAWS, OverheadLawFit, OverheadLaws, fit_overhead_laws
from theory.rounds import Rounds, paired_rounds, unpaired_rounds
from theory.verdict import MeasuredOptimum, measured_optimum, verdict

__all__ = [
    "LAWS",
    "CostFit",
    "CostModel",
    "ExchangeFit",
    "InputError",
    "LawFit",
    "MeasuredOptimum",
    "Measurements",
    "OverheadLawFit",
    "OverheadLaws",
    "Rounds",
    "attribute_growth",
    "e_opt_closed_form",
    "e_opt_integer",
    "e_opt_numeric",
    "feasible_experts",
    "fit_chinchilla",
    "fit_clark",
    "fit_cost_model",
    "fit_exchange",
    "fit_granularity",
    "fit_law",
    "fit_overhead_laws",
    "load_chinchilla_reference",
    "load_law_csv",
    "load_measurements",
    "measured_optimum",
    "measurements_from_records",
    "paired_rounds",
    "unpaired_rounds",
    "verdict",
]
