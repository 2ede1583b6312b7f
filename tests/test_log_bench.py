"""`python main.py bench log` runs end to end (tiny sizes here; real figures come from the bench)."""
import json

from engine.bench import log as bench


def test_bench_log_prints_the_promised_keys(capsys):
    assert bench.main(["--rows", "3000", "--verdicts", "300", "--fails", "8", "--size", "64",
                       "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("verdicts_per_s", "fails_per_s", "page_ms", "count_ms"):
        assert result[key] > 0, key
    assert result["rows"] == 3000 and result["page_rows"] == min(50, result["count"])
