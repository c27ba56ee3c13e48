"""Points that place the mesh by device count, and a measurement across two real processes."""

import pytest

from smoe.errors import UserError
from smoe.measure import point as points
from smoe.measure.record import run_measure_point


@pytest.mark.parametrize("experts,mesh", [(1, (8, 1)), (2, (4, 2)), (8, (1, 8)), (16, (1, 8))])
def test_devices_place_one_expert_group_per_device_group(experts, mesh):
    point = points.parse_point({"E": experts, "d": 64, "devices": 8})
    assert (point.config.mesh.data, point.config.mesh.expert) == mesh
    assert (point.fields["mesh_data"], point.fields["mesh_expert"]) == mesh
    assert points.parse_point(point.fields) == point, "a record's point fields must parse back to the same point"


def test_devices_conflicting_with_mesh_is_refused():
    with pytest.raises(UserError, match="point.devices"):
        points.parse_point({"E": 4, "devices": 8, "mesh_expert": 2})


def test_processes_must_divide_the_mesh():
    with pytest.raises(UserError, match="point.processes"):
        points.parse_point({"E": 4, "devices": 4, "processes": 3})


def test_two_process_setting_times_all_e_in_one_distributed_job():
    result = run_measure_point(points.parse_point({"experts": [2, 4], "d": 32, "L": 16, "batch": 8, "n_layers": 2,
                                                   "pre_layers": 1, "n_heads": 2, "devices": 4, "processes": 2,
                                                   "repeats": 2}))
    assert result["process_count"] == 2 and result["device_count"] == 4 and result["paired"] is True
    assert all(sorted(names) == ["E=2", "E=4", "dense"] for names in result["round_order"])
    assert [row["E"] for row in result["rows"]] == [2, 4]
    for row in result["rows"]:
        assert row["exchange.collectives.all-to-all"] == 2
        assert len(row["train_step.samples_s"]) == 2 and all(s > 0 for s in row["train_step.samples_s"])
