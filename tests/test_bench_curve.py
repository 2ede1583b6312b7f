"""`bench curve`: snapshots of one training, each calibrated and measured on the test split."""
import json

import numpy as np
import pytest
import torch

from engine.bench import curve
from tests.synthetic import write_mvtec


def test_the_curve_measures_each_snapshot_on_the_test_split(tmp_path, capsys):
    write_mvtec(tmp_path, "part", n_train=12, n_good=4, n_bad=4)
    out = tmp_path / "rows.jsonl"
    rc = curve.main(["--data", str(tmp_path), "--category", "part", "--image-size", "64",
                     "--teacher", "random", "--penalty", "none", "--minutes", "0.01", "0.02",
                     "--threads", "1", "--json", str(out), "--save-dir", str(tmp_path / "m")])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["category"] for r in rows] == ["part", "part"]
    assert rows[0]["minutes"] >= 0.01 and rows[1]["minutes"] >= 0.02
    assert rows[1]["steps"] > rows[0]["steps"] >= 1
    for r in rows:
        for key in ("image_auroc", "auroc_st_half", "auroc_ae_half", "auroc_smoothed_max",
                    "pixel_auroc", "au_pro", "heldout_auroc", "heldout_auroc_st", "heldout_auroc_ae",
                    "auroc_balanced", "heldout_auroc_balanced"):
            assert 0.0 <= r[key] <= 1.0, key
        for key in ("false_reject_rate", "miss_rate", "balanced_false_reject_rate", "balanced_miss_rate"):
            assert 0.0 <= r[key] <= 1.0, key
    printed = capsys.readouterr().out
    assert "AUROC" in printed and printed.count("\n") >= 4
    from engine.model import load_checkpoint
    model, meta = load_checkpoint(tmp_path / "m" / "0.02min.pt")     # a model eval can read
    assert meta["steps"] == rows[1]["steps"] and meta["threshold"] == rows[1]["threshold"]


def test_a_row_reads_the_maps_the_way_the_app_scores():
    """The image score is the combined map's maximum; the halves and the smoothed maximum
    are their own columns. Two images, one with a hot cell on each half."""
    parts = torch.zeros(2, 2, 8, 8)
    parts[1, 0, 3, 3] = 1.0          # defective image: ST half hot in one cell
    masks = (np.zeros((16, 16), bool), np.ones((16, 16), bool))
    test = curve.TestSet(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), ("good", "dent"),
                         ((16, 16), (16, 16)), masks)
    synthetic = type("S", (), {"miss_rate": 0.25})()
    row = curve.measure(parts, -0.1, test, 32, threshold=0.5, hold_scores=np.array([0.0]),
                        train_scores=np.array([-0.1]), synthetic=synthetic)
    assert row["image_auroc"] == 1.0 and row["auroc_st_half"] == 1.0
    assert row["auroc_ae_half"] == 0.5                      # both AE halves are zero: a tie
    assert row["mean_score_test_good"] == pytest.approx(-0.1)
    assert row["mean_score_test_defective"] == pytest.approx(0.9)
    assert row["false_reject_rate"] == 0.0 and row["miss_rate"] == 0.0
    assert row["synthetic_miss_rate"] == 0.25


def test_the_balanced_score_weights_down_the_half_that_scatters_on_good_parts():
    """Held-out good parts: the AE half's maxima scatter 4x as much as the ST half's, so it
    gets a quarter of the ST half's weight. On the test images below the AE half puts its
    maximum on a good part, and the ST half ranks right: equal weights rank the good part
    first, balanced ones do not."""
    hold = torch.zeros(6, 2, 4, 4)
    hold[:, 0, 0, 0] = torch.tensor([1.0, 1.1, 0.9, 1.0, 1.1, 0.9])
    hold[:, 1, 0, 0] = torch.tensor([1.0, 1.4, 0.6, 1.0, 1.4, 0.6])
    w_st, w_ae = curve.balanced_weights(hold)
    assert w_ae / w_st == pytest.approx(0.25) and (w_st + w_ae) / 2 == pytest.approx(1.0)
    parts = torch.zeros(2, 2, 4, 4)
    parts[0, 1, 1, 1] = 2.0                     # good part: a hot AE cell
    parts[1, 0, 2, 2] = 1.5                     # defect: a hot ST cell
    assert list(curve._weighted_max(parts, (1.0, 1.0))) == [2.0, 1.5]
    scores = curve._weighted_max(parts, (w_st, w_ae))
    assert scores[1] > scores[0]


def test_the_model_halves_equal_the_folded_ones():
    """A teacher that does not fold is scored from the model's own maps: same numbers."""
    from engine.fast import FoldedEfficientAD
    from engine.model import EfficientAD, ModelConfig
    torch.manual_seed(0)
    model = EfficientAD(ModelConfig(image_size=64)).eval()
    for name, v in (("q_st_a", 0.2), ("q_st_b", 0.9), ("q_ae_a", 0.1), ("q_ae_b", 0.4)):
        getattr(model, name).fill_(v)
    u = torch.rand(2, 3, 64, 64)
    folded = FoldedEfficientAD(model)
    halves, gamma = curve._model_halves(model)
    with torch.no_grad():
        torch.testing.assert_close(halves(u), folded.parts(u), rtol=1e-4, atol=1e-5)
        assert gamma == pytest.approx(float(folded.gamma), rel=1e-6)
        torch.testing.assert_close(halves(u).sum(1, keepdim=True) + gamma, model(model.normalize_image(u)),
                                   rtol=1e-4, atol=1e-5)


def test_the_backbone_itself_can_be_the_teacher(tmp_path):
    from engine.backbones import BackboneTeacher
    t = BackboneTeacher("efficientnet-lite0")
    with torch.no_grad():
        assert t(torch.zeros(1, 3, 64, 64)).shape == (1, 384, 8, 8)      # = the unpadded PDN's
    write_mvtec(tmp_path, "part", n_train=12, n_good=4, n_bad=4)
    out = tmp_path / "rows.jsonl"
    assert curve.main(["--data", str(tmp_path), "--category", "part", "--image-size", "64",
                       "--teacher", "backbone:efficientnet-lite0", "--penalty", "none",
                       "--minutes", "0.01", "--threads", "1", "--json", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["teacher"] == "backbone:efficientnet-lite0" and 0.0 <= row["image_auroc"] <= 1.0
