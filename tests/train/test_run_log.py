"""The run directory's bookkeeping: resume trims metrics to the checkpoint and survives a torn line."""

import json

from smoe.run_log import MetricsLog


def test_resume_drops_rows_after_checkpoint_and_a_torn_last_line(tmp_path):
    rows = [{"step": s, "split": "train", "loss": 1.0 / s} for s in (1, 2, 3, 4)]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "split": "tra'
    (tmp_path / "metrics.jsonl").write_text(text)
    log = MetricsLog(tmp_path, resume_step=3, enabled=True)
    log.write(4, "train", {"loss": 0.5})
    log.close()
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in kept] == [1, 2, 3, 4]
    assert kept[-1]["loss"] == 0.5
