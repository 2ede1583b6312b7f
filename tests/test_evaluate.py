"""`eval` on real-world set shapes: masks missing, none at all, some types only, LOCO folders."""
import json
import shutil

import cv2
import numpy as np
import pytest

import engine.cli  # noqa: F401 - bound before a test patches engine.train.train
import main
from engine.errors import InspectError
from engine.evaluate import check_category, load_mask_any
from synthetic import make_part, write_mvtec

TINY = ["--steps", "20", "--image-size", "64", "--teacher", "random", "--penalty", "none",
        "--device", "cpu"]


def _eval_json(tmp_path, capsys) -> dict:
    assert main.main(["eval", "--data", str(tmp_path), "--category", "widget", "--json"] + TINY) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _add_type(base, name, n=3, masks=True, seed=9):
    rng = np.random.default_rng(seed)
    (base / "test" / name).mkdir()
    if masks:
        (base / "ground_truth" / name).mkdir(parents=True)
    for i in range(n):
        im, m = make_part(rng, defect=True)
        cv2.imwrite(str(base / "test" / name / f"{i:03d}.png"), im[:, :, ::-1])
        if masks:
            cv2.imwrite(str(base / "ground_truth" / name / f"{i:03d}_mask.png"), (m * 255).astype(np.uint8))


def test_a_missing_mask_is_reported_before_any_training(tmp_path, capsys, monkeypatch):
    base = write_mvtec(tmp_path, "widget")
    (base / "ground_truth" / "blob" / "001_mask.png").unlink()

    def no_training(*a, **k):
        raise AssertionError("eval trained before checking the masks")

    monkeypatch.setattr("engine.train.train", no_training)
    assert main.main(["eval", "--data", str(tmp_path), "--category", "widget"] + TINY) == 2
    err = capsys.readouterr().err
    assert "1 of 4 'blob' test images have no mask" in err and "001.png" in err


def test_a_set_without_any_masks_gets_image_metrics_and_the_rates(tmp_path, capsys):
    base = write_mvtec(tmp_path, "widget")
    shutil.rmtree(base / "ground_truth")
    res = _eval_json(tmp_path, capsys)
    assert res["image_auroc"] is not None and res["pixel_auroc"] is None and res["au_pro"] is None
    assert res["types_without_masks"] == ["blob"]
    blob = res["per_type"]["blob"]
    assert blob["n_defective"] == 4 and 0.0 <= blob["miss_rate"] <= 1.0
    assert 0.0 <= res["false_reject_rate"] <= 1.0


def test_pixel_metrics_only_where_masks_exist_and_the_record_is_complete(tmp_path, capsys):
    base = write_mvtec(tmp_path, "widget")
    _add_type(base, "nomask", masks=False)
    res = _eval_json(tmp_path, capsys)
    assert res["per_type"]["blob"]["pixel_auroc"] is not None
    assert res["per_type"]["nomask"]["pixel_auroc"] is None
    assert res["per_type"]["nomask"]["image_auroc"] is not None
    assert res["types_without_masks"] == ["nomask"]
    assert res["n_defective"] == 7
    # what was run, for the record
    assert res["seed"] == 0 and res["steps"] == 20 and res["train_minutes"] > 0
    assert 1 <= res["selected_step"] <= 20          # the state Learn kept
    assert res["teacher"] == "random" and res["teacher_sha256"] is None
    assert res["app_version"].startswith("0.1.0")
    syn = res["synthetic_check"]
    assert syn["n"] == 48 and 0.0 <= syn["miss_rate"] <= 1.0
    assert res["threshold_estimate"]["target_frr"] == 0.01


def test_loco_mask_folders_are_unions(tmp_path):
    base = write_mvtec(tmp_path, "widget", n_bad=1)
    mask_file = base / "ground_truth" / "blob" / "000_mask.png"
    m = cv2.imread(str(mask_file), cv2.IMREAD_GRAYSCALE)
    mask_file.unlink()
    folder = base / "ground_truth" / "blob" / "000"
    folder.mkdir()
    half = np.zeros_like(m)
    half[:, : m.shape[1] // 2] = 255
    cv2.imwrite(str(folder / "000.png"), m)
    cv2.imwrite(str(folder / "001.png"), half)
    check = check_category(tmp_path, "widget")
    item = next(i for i in check.items if i.defect_type == "blob")
    assert item.mask == folder
    union = load_mask_any(item.mask, m.shape)
    assert np.array_equal(union, (m > 127) | (half > 127))


def test_a_test_set_without_defects_is_refused(tmp_path):
    base = write_mvtec(tmp_path, "widget")
    shutil.rmtree(base / "test" / "blob")
    with pytest.raises(InspectError, match="at least one defect folder"):
        check_category(tmp_path, "widget")


def test_calibrate_sets_the_threshold_again_for_another_target(tmp_path, capsys):
    from engine.model import load_checkpoint
    base = write_mvtec(tmp_path, "widget", n_train=20)
    good, model = base / "train" / "good", tmp_path / "m.pt"
    assert main.main(["train", "--good", str(good), "--out", str(model)] + TINY) == 0
    _, meta = load_checkpoint(model)
    card = (tmp_path / "m.card.txt").read_text()             # the model card, in words
    assert f"Threshold {meta['threshold']:.4f}." in card and "Expected false rejects: 1.0%" in card
    assert "Synthetic defects: the threshold misses" in card and "RANDOM" in card
    strict, loose = tmp_path / "strict.pt", tmp_path / "loose.pt"
    assert main.main(["calibrate", "--model", str(model), "--good", str(good),
                      "--target-frr", "0.1%", "--out", str(strict)]) == 0
    assert main.main(["calibrate", "--model", str(model), "--good", str(good),
                      "--target-frr", "0.05", "--out", str(loose)]) == 0
    assert "Expected false rejects: 5.0%" in capsys.readouterr().out
    (_, ms), (_, ml) = load_checkpoint(strict), load_checkpoint(loose)
    assert ms["threshold"] > ml["threshold"]
    assert ml["threshold_estimate"]["target_frr"] == 0.05
    assert "Expected false rejects: 5.0%" in (tmp_path / "loose.card.txt").read_text()
    assert ml["recalibrated_from"] == meta["model_id"] != ml["model_id"]
    # the same held-out parts: their scores are those the model was trained with
    assert np.allclose(ml["holdout_scores"], meta["holdout_scores"], rtol=1e-4)
    with pytest.raises(SystemExit) as exit_:
        main.main(["calibrate", "--model", str(model), "--good", str(good), "--target-frr", "70%"])
    assert exit_.value.code == 2 and "between 0 and 0.5" in capsys.readouterr().err


def test_calibrate_can_weigh_the_halves_again_and_the_model_remembers_it(tmp_path):
    """calibrate --halves balanced: the same weights, the halves weighted as the balanced
    rule says; the model file records the rule, and a later calibrate keeps it."""
    from engine.model import load_checkpoint
    from engine.train import map_normalisation
    base = write_mvtec(tmp_path, "widget", n_train=30)
    good, model = base / "train" / "good", tmp_path / "m.pt"
    assert main.main(["train", "--good", str(good), "--out", str(model), "--halves", "equal"] + TINY) == 0
    net, meta = load_checkpoint(model)
    assert meta["train_config"]["balance_halves"] is False
    out = tmp_path / "b.pt"
    assert main.main(["calibrate", "--model", str(model), "--good", str(good),
                      "--halves", "balanced", "--out", str(out)]) == 0
    bal, mb = load_checkpoint(out)
    assert mb["train_config"]["balance_halves"] is True
    assert float(bal.q_st_a) == pytest.approx(float(net.q_st_a))      # offsets stay
    gains = [(float(net.q_st_b - net.q_st_a)) / float(bal.q_st_b - bal.q_st_a),
             (float(net.q_ae_b - net.q_ae_a)) / float(bal.q_ae_b - bal.q_ae_a)]
    assert np.mean(gains) == pytest.approx(1.0, rel=1e-4) and gains[0] != pytest.approx(gains[1])
    again = tmp_path / "again.pt"
    assert main.main(["calibrate", "--model", str(out), "--good", str(good), "--out", str(again)]) == 0
    _, ma = load_checkpoint(again)
    assert ma["train_config"]["balance_halves"] is True
    assert np.allclose(ma["holdout_scores"], mb["holdout_scores"], rtol=1e-4)
