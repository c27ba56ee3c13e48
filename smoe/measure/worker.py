"""One process of a multi-process measurement: `python -m smoe.measure.worker POINT.json OUT.json ...`.

Started by `measure_in_processes` through the same launcher as `smoe train --processes`; every
process runs the same programs in the same order (the collectives need all of them; a setting's
shuffled round order comes from the same seed everywhere), process 0 writes the record.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from smoe import atomic, launch


def measure_in_processes(point, repeats: int) -> dict:
    """The record of MeasurePoint `point` measured by its spec.processes local processes (jax.distributed)."""
    with tempfile.TemporaryDirectory(prefix="smoe-measure-") as tmp:
        point_file, out_file = Path(tmp) / "point.json", Path(tmp) / "record.json"
        point_file.write_text(json.dumps(point.fields))
        code = launch.launch_local([str(point_file), str(out_file), "--repeats", str(repeats)],
                                   point.spec.processes, point.config.mesh.size, module="smoe.measure.worker")
        if code != 0 or not out_file.exists():
            raise RuntimeError(f"multi-process measurement failed with exit code {code}")
        return json.loads(out_file.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("point")
    parser.add_argument("out")
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    args = parser.parse_args(argv)
    launch.init_worker(args.coordinator, args.num_processes, args.process_id)
    import jax

    from smoe.measure.point import parse_point
    from smoe.measure.record import measure

    record = measure(parse_point(json.loads(Path(args.point).read_text())), args.repeats)
    if jax.process_index() == 0:
        atomic.write_text(args.out, json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
