"""What XLA says about a compiled program: FLOPs, bytes, memory and collectives.

The analytic counts to check it against live in the jax-free `smoe.accounting`.
"""

from __future__ import annotations

import re

import jax


COLLECTIVES = ("all-to-all", "all-gather", "all-reduce", "reduce-scatter", "collective-permute")
_COLLECTIVE_RE = re.compile(r"\b(all-to-all|all-gather|all-reduce|reduce-scatter|collective-permute)(?:-start)?\(")


def xla_cost(compiled: jax.stages.Compiled) -> dict:
    """FLOPs and bytes accessed from XLA's cost analysis (per device for an SPMD program)."""
    cost = compiled.cost_analysis()
    # Older jax returned one dict per computation in a list; current jax returns a single dict.
    entries = cost if isinstance(cost, (list, tuple)) else [cost or {}]
    return {
        "xla_flops": float(sum(entry.get("flops", 0.0) for entry in entries)),
        "xla_bytes_accessed": float(sum(entry.get("bytes accessed", 0.0) for entry in entries)),
    }


def xla_memory(compiled: jax.stages.Compiled) -> dict:
    """Peak and temporary bytes; field names differ between jax versions and backends."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {"peak_bytes": None, "temp_bytes": None}
    get = lambda name: getattr(stats, name, 0) or 0  # noqa: E731
    peak = get("peak_memory_in_bytes")
    if not peak:
        # Without a reported peak, the live set is bounded by inputs + outputs + scratch, minus donated aliases.
        peak = (get("argument_size_in_bytes") + get("output_size_in_bytes") + get("temp_size_in_bytes")
                - get("alias_size_in_bytes"))
    return {"peak_bytes": int(peak), "temp_bytes": int(get("temp_size_in_bytes"))}


def collective_counts(compiled: jax.stages.Compiled) -> dict[str, int]:
    """Collectives in the optimised HLO; async pairs count once (the `-start` half)."""
    counts = dict.fromkeys(COLLECTIVES, 0)
    for match in _COLLECTIVE_RE.finditer(compiled.as_text()):
        counts[match.group(1)] += 1
    return counts
