"""`python main.py bench pipeline`: the live path measured with the app's own parts.

The test runs a finite line (--count) until every part is judged or skipped, so it waits
for a condition, never for a time window; rate bounds belong to the benchmark itself."""
import argparse

from app import bench_pipeline
from engine.model import EfficientAD, ModelConfig, save_checkpoint

PARTS = 24


def test_pipeline_bench_accounts_for_every_part_and_logs_every_verdict(tmp_path):
    model = tmp_path / "m.pt"
    save_checkpoint(EfficientAD(ModelConfig(image_size=64)), model,
                    {"threshold": 0.5, "model_id": "tiny"})
    a = argparse.Namespace(fps=20.0, seconds=0.0, warmup=0.0, frame="160x120", model=str(model),
                           size="small", image_size=64, device="cpu", backend="auto", threads=0,
                           prerendered=True, count=PARTS)
    r = bench_pipeline.run(a)
    assert r["errors"] == []
    # each part the camera made was either judged or skipped (newest frame first), never
    # judged twice, never lost between the camera and the scoring thread
    assert r["verdicts"] + r["skipped_frames"] == PARTS, r
    assert 0 < r["verdicts"] == r["verdicts_total"], r
    assert r["log_flushed"] and r["log_rows_total"] == r["verdicts_total"], r
    assert r["every_verdict_logged"] and r["log_lost"] == 0, r
    assert r["score_ms_median"] > 0 and r["camera_to_verdict_ms_median"] >= r["score_ms_median"], r
