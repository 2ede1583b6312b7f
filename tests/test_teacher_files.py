"""The shipped teacher and penalty files: loadable, checksummed, and every image licensed."""
import hashlib
import re
from pathlib import Path

import torch

from engine.data import list_images, load_rgb
from engine.model import load_teacher_state, pdn, pdn_output_size

RES = Path(__file__).resolve().parent.parent / "resources"


def test_shipped_teacher_loads_into_small_pdn():
    teacher = pdn("small", 384)
    load_teacher_state(teacher, RES / "teachers" / "teacher_small.pth")
    sd = torch.load(RES / "teachers" / "teacher_small.pth", weights_only=True)
    assert list(sd)[:2] == ["0.weight", "0.bias"]
    with torch.no_grad():
        out = teacher(torch.randn(1, 3, 64, 64))
    s = pdn_output_size(64)
    assert out.shape == (1, 384, s, s) and torch.isfinite(out).all()


def test_teacher_card_sha256_matches():
    card = (RES / "teachers" / "README.md").read_text()
    listed = dict(re.findall(r"`([\w.-]+\.pth)`\s*\|\s*`([0-9a-f]{64})`", card))
    files = sorted(p.name for p in (RES / "teachers").glob("*.pth"))
    assert files and sorted(listed) == files
    for name, digest in listed.items():
        assert hashlib.sha256((RES / "teachers" / name).read_bytes()).hexdigest() == digest


def test_penalty_images_are_listed_with_licence():
    folder = RES / "penalty"
    images = list_images(folder)
    assert len(images) >= 10
    readme = (folder / "README.md").read_text()
    assert sum(p.stat().st_size for p in images) < 3_000_000
    for p in images:
        row = [line for line in readme.splitlines() if line.startswith(f"| {p.name} |")]
        assert row and re.search(r"CC0|CC BY|public domain", row[0]), p.name
        assert max(load_rgb(p).shape[:2]) <= 512
