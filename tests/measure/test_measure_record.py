"""One tiny sectional point with baselines on a 2x4 mesh: record shape, times and collectives."""

import json

import pytest

from smoe.measure.analysis import COLLECTIVES
from smoe.measure.point import parse_point
from smoe.measure.record import run_measure_point

POINT = {"kind": "sectional", "E": 4, "d": 32, "L": 16, "batch": 8, "n_layers": 2,
         "mesh_data": 2, "mesh_expert": 4, "baselines": True, "repeats": 2}
SECTIONAL_PROGRAMS = ("train_step", "forward", "pre_expert", "experts", "exchange")
CONTEXT_KEYS = ("backend", "device_count", "process_count", "jax_version", "machine", "cpu_count")


@pytest.fixture(scope="module")
def record():
    return run_measure_point(parse_point(POINT))


def test_record_is_flat_json_with_point_and_context(record):
    assert json.loads(json.dumps(record)) == record
    assert all(not isinstance(value, dict) for value in record.values())
    for key in ("kind", "E", "d", "L", "r", "batch", "mesh_data", "mesh_expert", *CONTEXT_KEYS):
        assert key in record
    assert record["device_count"] >= 8 and "repeats" not in record


@pytest.mark.parametrize("prefix", [f"{name}." for name in SECTIONAL_PROGRAMS]
                         + [f"baseline.{kind}.{name}." for kind in ("dense", "topk")
                            for name in ("train_step", "forward")])
def test_every_program_has_positive_times_and_xla_numbers(record, prefix):
    assert record[prefix + "median_s"] > 0
    assert len(record[prefix + "samples_s"]) == 2 and min(record[prefix + "samples_s"]) > 0
    for key in ("xla_flops", "xla_bytes_accessed", "peak_bytes", "temp_bytes"):
        assert record[prefix + key] is not None
    assert all(f"{prefix}collectives.{op}" in record for op in COLLECTIVES)


def test_exchange_is_exactly_two_all_to_alls(record):
    counts = {op: record[f"exchange.collectives.{op}"] for op in COLLECTIVES}
    assert counts == {**dict.fromkeys(COLLECTIVES, 0), "all-to-all": 2}


def test_experts_and_pre_expert_do_not_communicate(record):
    for program in ("experts", "pre_expert"):
        assert sum(record[f"{program}.collectives.{op}"] for op in COLLECTIVES) == 0


def test_forward_has_the_designed_expert_exchange(record):
    assert record["forward.collectives.all-to-all"] == 2


def test_ratios_against_dense_baseline(record):
    assert record["ratio.step_time_over_dense"] == pytest.approx(
        record["train_step.median_s"] / record["baseline.dense.train_step.median_s"])
    assert 0 < record["ratio.flops_over_dense"] < 1
    assert record["analytic_flops.train_step"] == 3 * record["analytic_flops.forward"]


def test_bfloat16_remat_point_measures_every_program():
    point = {"kind": "sectional", "E": 2, "d": 32, "L": 16, "batch": 4, "n_layers": 2, "mesh_expert": 2,
             "compute_dtype": "bfloat16", "remat": "block", "attention_impl": "xla", "repeats": 1}
    record = run_measure_point(parse_point(point))
    assert record["compute_dtype"] == "bfloat16" and record["remat"] == "block"
    for name in SECTIONAL_PROGRAMS:
        assert record[f"{name}.median_s"] > 0 and record[f"{name}.peak_bytes"] > 0
