"""Sweep config validation, expansion order and keys."""

import pytest

from smoe.errors import UserError
from smoe.sweep.spec import SweepSpec, expand, load_spec, point_key, spec_hash


def _spec(**overrides):
    data = {"name": "t", "kind": "synthetic", "base": {"a": 1.0}, "grid": {"E": [2, 4], "b": [0.5, 1.5]}}
    return SweepSpec.from_dict(data | overrides)


@pytest.mark.parametrize("overrides, fragment", [
    ({"gird": {}}, "unknown key 'gird'"),
    ({"grid": {"E": []}}, "grid.E is an empty list"),
    ({"grid": {"E": 4}}, "grid.E must be a list"),
    ({"repeats": 0}, "'repeats' must be an integer >= 1"),
    ({"repeats": True}, "'repeats'"),
    ({"base": [1]}, "'base' must be a mapping"),
    ({"points": [{"E": 2, "b": 0.5}]}, "appears twice"),
])
def test_invalid_config_names_key(overrides, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")) as info:
        expand(_spec(**overrides))
    assert "\n" not in str(info.value)


def test_missing_name_and_non_mapping():
    with pytest.raises(UserError, match="missing key 'name'"):
        SweepSpec.from_dict({"kind": "synthetic"})
    with pytest.raises(UserError, match="must be a mapping"):
        SweepSpec.from_dict([1, 2])


def test_expand_is_cartesian_deterministic_and_keyed():
    spec = _spec(points=[{"E": 8, "b": 0.0}])
    points = expand(spec)
    assert points == [
        {"a": 1.0, "E": 2, "b": 0.5}, {"a": 1.0, "E": 2, "b": 1.5},
        {"a": 1.0, "E": 4, "b": 0.5}, {"a": 1.0, "E": 4, "b": 1.5},
        {"a": 1.0, "E": 8, "b": 0.0},
    ]
    assert points == expand(_spec(points=[{"E": 8, "b": 0.0}]))
    assert point_key(points[0]) == "E=2,a=1.0,b=0.5"
    assert point_key({"b": 0.5, "E": 2, "a": 1.0}) == point_key(points[0])
    assert len({point_key(p) for p in points}) == len(points)


def test_repeats_add_repeat_field_outermost():
    points = expand(_spec(grid={"E": [2, 4]}, repeats=2))
    assert [(p["E"], p["repeat"]) for p in points] == [(2, 0), (4, 0), (2, 1), (4, 1)]


def test_only_explicit_points_when_grid_empty():
    assert expand(_spec(grid={}, points=[{"E": 3}])) == [{"a": 1.0, "E": 3}]
    assert expand(_spec(grid={})) == [{"a": 1.0}]


def test_hash_changes_with_config_and_yaml_roundtrip(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nkind: synthetic\nbase: {a: 1.0}\ngrid:\n  E: [2, 4]\n  b: [0.5, 1.5]\n")
    assert spec_hash(load_spec(path)) == spec_hash(_spec())
    assert spec_hash(_spec()) != spec_hash(_spec(repeats=2))


def test_load_spec_reports_bad_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(UserError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
