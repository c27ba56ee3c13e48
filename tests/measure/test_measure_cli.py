"""`smoe measure` driven in-process through register(), plus point validation and timing."""

import argparse
import json
import time

import pytest

from smoe.errors import UserError
from smoe.measure import cli
from smoe.measure.peak import matmul_peak_flops
from smoe.accounting import analytic_flops
from smoe.config import ModelConfig
from smoe.measure.point import parse_point
from smoe.measure.timing import time_fn, time_round_robin


def parse(argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["measure", *argv])


def test_json_prints_one_parseable_record_per_point(tmp_path, capsys):
    config = tmp_path / "points.yaml"
    config.write_text("points:\n"
                      "  - {kind: dense, d: 32, L: 16, batch: 8, n_layers: 2}\n"
                      "  - {kind: sectional, E: 2, d: 32, L: 16, batch: 8, n_layers: 2, mesh_expert: 2}\n")
    args = parse([str(config), "--json", "--repeats", "2", "--set", "r=2"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["kind"] for r in records] == ["dense", "sectional"]
    assert all(r["r"] == 2 and r["train_step.median_s"] > 0 and len(r["train_step.samples_s"]) == 2 for r in records)
    assert records[1]["exchange.collectives.all-to-all"] == 2
    # The --set override reached the model that was measured, not just the record's header.
    dense = ModelConfig(kind="dense", d_model=32, seq_len=16, n_layers=2, shorten=2)
    assert records[0]["analytic_flops.forward"] == analytic_flops(dense, 8)


def test_distributed_refuses_points_that_start_their_own_processes(tmp_path):
    config = tmp_path / "point.yaml"
    config.write_text("{E: 2, d: 32, devices: 2, processes: 2}\n")
    args = parse([str(config), "--distributed"])
    with pytest.raises(UserError, match="^--distributed: .*processes"):
        args.func(args)


def test_table_shows_ratio_and_fraction_of_peak():
    record = {"kind": "sectional", "E": 2, "d": 32, "L": 16, "r": 1, "mesh_data": 1, "mesh_expert": 2,
              "train_step.median_s": 0.01, "baseline.dense.train_step.median_s": 0.02,
              "ratio.step_time_over_dense": 0.5, "ratio.flops_over_dense": 0.6, "analytic_flops.train_step": 1e8}
    table = cli.format_table([record], peak_flops=1e11)
    assert "0.500" in table and "0.600" in table and "10.0%" in table


@pytest.mark.parametrize("point, field", [
    ({"E": 3, "d": 32}, "point.E"),
    ({"bogus": 1}, "point.bogus"),
    ({"kind": "sparse"}, "point.kind"),
    ({"repeats": 0}, "point.repeats"),
    ({"batch": 6, "mesh_data": 4}, "point.batch"),
    ({"model.n_experts": 3, "d": 32}, "point.E"),
    ({"train.steps": 0}, "point.steps"),
    ({"data.corpus": "x"}, "point.data.corpus"),
])
def test_bad_point_fields_name_the_field(point, field):
    with pytest.raises(UserError) as err:
        parse_point(point)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_single_point_config_and_missing_file(tmp_path):
    config = tmp_path / "one.yaml"
    config.write_text("kind: dense\nd: 32\n")
    assert cli.load_points(str(config), [])[0].config.model.kind == "dense"
    with pytest.raises(UserError, match="config"):
        cli.load_points(str(tmp_path / "nope.yaml"), [])


def test_point_keys_dotted_nested_bare_and_aliased_mean_the_same():
    short = parse_point({"E": 2, "d": 32, "L": 16, "r": 2, "batch": 4, "n_layers": 2, "mesh_expert": 2})
    dotted = parse_point({"model.n_experts": 2, "model.d_model": 32, "model.seq_len": 16, "model.shorten": 2,
                          "train.batch_size": 4, "model": {"n_layers": 2}, "mesh.expert": 2})
    assert dotted == short and dotted.fields == short.fields
    assert short.config.mesh.size == 2 and short.config.model.shorten == 2


def test_set_overrides_every_point_with_any_key_form(tmp_path):
    config = tmp_path / "points.yaml"
    config.write_text("points:\n  - {E: 2, d: 32}\n  - {E: 4, d: 64, repeats: 3}\n")
    loaded = cli.load_points(str(config), ["model.n_experts=1", "baselines=true"])
    assert [p.config.model.n_experts for p in loaded] == [1, 1]
    assert [(p.spec.baselines, p.spec.repeats) for p in loaded] == [(True, None), (True, 3)]


def test_round_robin_takes_turns_and_times_what_runs():
    calls = []
    timing = time_round_robin({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=1, repeats=3)
    assert calls == ["a", "b", "a", "b"] * 2, "warm-up each once, then strict turns"
    assert all(len(t["samples_s"]) == 3 for t in timing.values())
    slow = time_fn(time.sleep, 0.01, warmup=0, repeats=3)
    assert 0.01 <= slow["median_s"] < 1 and slow["median_s"] in slow["samples_s"]
    with pytest.raises(ValueError):
        time_fn(time.sleep, 0, repeats=0)


def test_peak_is_a_plausible_rate():
    # above 10 MFLOP/s (any machine) and below 100 PFLOP/s (no CPU or single accelerator)
    assert 1e7 < matmul_peak_flops(n=128, repeats=3) < 1e17
