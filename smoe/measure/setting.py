"""One setting, all its E: every E and the dense baseline compiled in one process, timed in rounds.

Each round times every E's programs and the dense baseline's once, the units in a freshly shuffled
order (seeded by the setting's train.seed), so a drift of the machine between rounds hits every E
and the dense baseline of that round alike; `smoe fit` divides each sample by its round's dense
time (theory.rounds.paired_rounds) to cancel it. The result is one row per E (the store keeps them
under the one sweep point) plus the fields the rows share: the dense baseline's, the round order,
`rounds` and `paired: true`.
"""

from __future__ import annotations

from smoe.measure import point as points
from smoe.measure.point import MeasurePoint
from smoe.measure.programs import build_programs
from smoe.measure.record import context, dense_ratios, program_fields, static_fields
from smoe.measure.timing import time_rounds

DENSE_UNIT, DENSE_PREFIX = "dense", "baseline.dense."


def unit_name(experts: int) -> str:
    return f"E={experts}"


def measure_setting(point: MeasurePoint, rounds: int) -> dict:
    """{"rows": [one record per E], **shared fields}; `baselines: true` adds each E's top-k model."""
    # The dense model does not depend on E; the smallest E's mesh (mostly data) places it.
    configs = {DENSE_UNIT: {DENSE_PREFIX: points.baseline_config(point.members[0].config, "dense")}}
    for member in point.members:
        configs[unit_name(member.config.model.n_experts)] = {"": member.config} | (
            {"baseline.topk.": points.baseline_config(member.config, "topk")} if point.spec.baselines else {})
    units, compiled, statics = {}, {}, {}
    for unit, kinds in configs.items():
        units[unit] = {}
        for prefix, cfg in kinds.items():
            payloads = point.spec.payloads if prefix == "" else ()
            statics[unit, prefix] = static_fields(cfg, payloads)
            for name, program in build_programs(cfg, payloads).items():
                compiled[unit, prefix + name] = program
                units[unit][f"{unit}/{prefix}{name}"] = program.run
    timed = time_rounds(units, rounds, seed=point.members[0].config.train.seed)
    measured = {unit: {} for unit in configs}
    for (unit, name), program in compiled.items():
        samples = timed["samples_s"][f"{unit}/{name}"]
        measured[unit] |= {f"{name}.{key}": value for key, value in program_fields(program, samples).items()}
    for (unit, prefix), fields in statics.items():
        measured[unit] |= {prefix + key: value for key, value in fields.items()}
    shared = context() | measured[DENSE_UNIT] | {"rounds": rounds, "round_order": timed["order"], "paired": True}
    rows = []
    for member in point.members:
        row = member.fields | measured[unit_name(member.config.model.n_experts)]
        rows.append(row | dense_ratios(row | shared, DENSE_PREFIX))
    return {"rows": rows} | shared
