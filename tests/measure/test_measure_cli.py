"""`smoe measure` driven in-process through register(), plus point validation and timing."""

import argparse
import json

import pytest

from smoe.errors import UserError
from smoe.measure import cli
from smoe.measure.peak import matmul_peak_flops
from smoe.measure.point import normalize
from smoe.measure.timing import time_fn


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
    assert all(r["r"] == 2 and r["train_step.median_s"] > 0 for r in records)
    assert records[1]["exchange.collectives.all-to-all"] == 2


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
])
def test_bad_point_fields_name_the_field(point, field):
    with pytest.raises(UserError) as err:
        normalize(point)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_single_point_config_and_missing_file(tmp_path):
    config = tmp_path / "one.yaml"
    config.write_text("kind: dense\nd: 32\n")
    assert cli.load_points(str(config), [])[0]["kind"] == "dense"
    with pytest.raises(UserError, match="config"):
        cli.load_points(str(tmp_path / "nope.yaml"), [])


def test_time_fn_and_peak_report_positive_numbers():
    timing = time_fn(lambda x: x + 1, 1.0, warmup=1, repeats=3)
    assert len(timing["samples_s"]) == 3 and timing["median_s"] >= 0
    assert matmul_peak_flops(n=128, repeats=3) > 0
