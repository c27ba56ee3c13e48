"""A setting (`experts: [...]`): all its E and the dense baseline timed in freshly shuffled rounds."""

import json

import pytest

from smoe.errors import UserError
from smoe.measure.analysis import COLLECTIVES
from smoe.measure.point import parse_point
from smoe.measure.record import run_measure_point
from smoe.measure.timing import time_rounds
from smoe.sweep.store import result_rows

SETTING = {"experts": [1, 2], "d": 16, "L": 8, "batch": 4, "n_layers": 2, "n_heads": 2, "devices": 2,
           "repeats": 3, "payloads": [1, 4]}


def test_rounds_shuffle_the_units_afresh_each_round_and_time_every_unit_each_round():
    calls = []
    units = {name: {f"{name}/step": (lambda n=name: calls.append(n))} for name in ("E=1", "E=2", "E=4", "E=8", "dense")}
    timed = time_rounds(units, rounds=12, warmup=0, seed=7)
    order = timed["order"]
    assert all(sorted(names) == sorted(units) for names in order), "every unit, dense included, once per round"
    assert calls == [name for names in order for name in names], "the units ran in the recorded order"
    assert len({tuple(names) for names in order}) > 6, "a fresh order each round"
    assert len({names[0] for names in order}) > 2, "no unit always goes first"
    assert time_rounds(units, rounds=12, warmup=0, seed=7)["order"] == order, "seeded: every process agrees"
    assert all(len(s) == 12 for s in timed["samples_s"].values())


def test_setting_parses_into_one_point_per_e_with_the_mesh_following_e():
    point = parse_point(SETTING)
    assert [m.config.model.n_experts for m in point.members] == [1, 2]
    assert [(m.config.mesh.data, m.config.mesh.expert) for m in point.members] == [(2, 1), (1, 2)]
    assert point.spec.payloads == (1, 4) and "E" not in point.fields
    again = parse_point(json.loads(json.dumps(point.fields)))
    assert [m.config for m in again.members] == [m.config for m in point.members], "fields parse back"


@pytest.mark.parametrize("extra, field", [({"E": 2}, "point.E"), ({"experts": [2, 1]}, "point.experts"),
                                          ({"experts": [1, 3]}, "point.E"), ({"payloads": []}, "point.payloads"),
                                          ({"mesh_expert": 2, "devices": None}, "point.experts")])
def test_bad_settings_name_the_field(extra, field):
    point = {k: v for k, v in (SETTING | extra).items() if v is not None}
    with pytest.raises(UserError) as err:
        parse_point(point)
    assert str(err.value).startswith(field)


def test_a_setting_is_one_row_per_e_beside_the_shared_dense_baseline():
    result = run_measure_point(parse_point(SETTING))
    assert json.loads(json.dumps(result)) == result
    assert result["paired"] is True and result["rounds"] == 3
    assert all(sorted(names) == ["E=1", "E=2", "dense"] for names in result["round_order"])
    assert len(result["baseline.dense.train_step.samples_s"]) == 3
    rows = result_rows(result)
    assert [row["E"] for row in rows] == [1, 2] and all(row["mesh_data"] * row["mesh_expert"] == 2 for row in rows)
    for row in rows:
        for program in ("train_step", "forward", "experts", "exchange", "exchange_x4"):
            assert len(row[f"{program}.samples_s"]) == 3 and min(row[f"{program}.samples_s"]) > 0
        assert row["exchange_x4.bytes_per_device"] == 4 * row["exchange.bytes_per_device"]
        assert row["ratio.step_time_over_dense"] == pytest.approx(
            row["train_step.median_s"] / row["baseline.dense.train_step.median_s"])
    # The model's own exchange, at every payload: two all-to-alls and nothing else.
    assert {op: rows[1][f"exchange_x4.collectives.{op}"] for op in COLLECTIVES} == {
        **dict.fromkeys(COLLECTIVES, 0), "all-to-all": 2}
    assert rows[0]["exchange.messages_per_device"] == 0 and rows[1]["exchange.messages_per_device"] == 2
