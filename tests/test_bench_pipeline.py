"""`python main.py bench pipeline`: the live path measured with the app's own parts, the
serial loop and the pipelined one in one run.

The test runs a finite line (--count) until every part is judged or skipped, so it waits
for a condition, never for a time window; rate bounds belong to the benchmark itself."""
import argparse

from app import bench_pipeline
from engine.model import EfficientAD, ModelConfig, save_checkpoint

PARTS = 24


def test_pipeline_bench_runs_both_loops_accounts_for_every_part_and_logs_every_verdict(tmp_path, capsys):
    model = tmp_path / "m.pt"
    save_checkpoint(EfficientAD(ModelConfig(image_size=64)), model,
                    {"threshold": 0.5, "model_id": "tiny"})
    a = argparse.Namespace(fps=20.0, seconds=0.0, warmup=0.0, frame="160x120", model=str(model),
                           size="small", image_size=64, device="cpu", backend="auto", threads=0,
                           prerendered=True, count=PARTS, loop="both")
    r = bench_pipeline.run(a)
    assert r["errors"] == [] and set(r["loops"]) == {"serial", "pipelined"}, r
    for name, x in r["loops"].items():
        assert x["loop"] == name and x["backend"] == r["backend"], r
        # each part the camera made was either judged or skipped (newest frame first), never
        # judged twice, never lost between the camera and the networks
        assert x["verdicts"] + x["skipped_frames"] == PARTS, x
        assert 0 < x["verdicts"] == x["verdicts_total"] and x["in_frame_order"], x
        assert x["log_flushed"] and x["log_rows_total"] == x["verdicts_total"], x
        assert x["every_verdict_logged"] and x["log_lost"] == 0, x
        assert 0 < x["score_ms_median"] <= x["camera_to_verdict_ms_median"], x
        assert x["camera_to_verdict_ms_median"] <= x["camera_to_verdict_ms_p95"], x
    assert r["loops"]["serial"]["skipped_in_line"] == 0
    assert r["speedup"] > 0
    bench_pipeline._print(a, r)
    out = capsys.readouterr().out
    assert "serial" in out and "pipelined" in out and "pipelined / serial" in out
