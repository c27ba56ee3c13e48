"""Theory of sectional MoE: the S(E) cost model, E_opt, timing fits and loss scaling laws.

Pure numpy/scipy (no jax), so it imports instantly and can be used on its own.
"""

from theory.cost_fit import CostFit, fit_cost_model
from theory.cost_model import CostModel
from theory.eopt import e_opt_closed_form, e_opt_integer, e_opt_numeric, feasible_experts
from theory.errors import InputError
from theory.law_data import load_chinchilla_reference, load_law_csv
from theory.loss_laws import LawFit, fit_chinchilla, fit_clark, fit_granularity, fit_law
from theory.measurements import Measurements, load_measurements, measurements_from_records

__all__ = [
    "CostFit",
    "CostModel",
    "InputError",
    "LawFit",
    "Measurements",
    "e_opt_closed_form",
    "e_opt_integer",
    "e_opt_numeric",
    "feasible_experts",
    "fit_chinchilla",
    "fit_clark",
    "fit_cost_model",
    "fit_granularity",
    "fit_law",
    "load_chinchilla_reference",
    "load_law_csv",
    "load_measurements",
    "measurements_from_records",
]
