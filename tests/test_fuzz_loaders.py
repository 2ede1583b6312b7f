"""Property-based fuzzing of every loader of a file a user can hand us:

  * model checkpoints: engine.model.load_checkpoint and engine.scoring.Scorer.from_file;
  * teacher files (the shipped file, the authors' layout, anomalib's layout):
    engine.model.load_teacher_state;
  * the settings file: engine.settings.load_settings (strict) and load_settings_repaired
    (what the app starts with);
  * GenTL producers: GENICAM_GENTL64_PATH and .cti paths (engine.camera.producers).

Each test throws mutated inputs at a loader (a real valid file cut short, with bits
flipped or bytes overwritten; random bytes or text; the real file's dict with values of the
wrong type or shape, NaN/inf, missing or extra keys, newer versions; random JSON) and
asserts a successful, sound load or ONE clear InspectError (one line), never another
exception. torch.load runs with weights_only=True, so hostile bytes never run code; a
hang would hit pytest's timeout.

Hypothesis runs derandomized (the same cases every run). The number of cases each test
ran is printed (`pytest -s`) and checked; N below is what each test asks for. Measured on
the shared 2-core dev machine: 72-94 s for the file; loader calls per run: checkpoint bytes
122, checkpoint dicts 410 (205 files, each through load_checkpoint and Scorer.from_file),
teacher bytes 81, teacher dicts 406 (203, from a file and in memory), settings JSON 400,
settings dicts 506, settings bytes 203 (each also through the strict loader), GenTL path
variable 100 (192 producers checked), .cti paths 1,632 (102 random paths + 15 fixed places).
A producer with bits flipped in its machine code can still crash the process when loaded:
no in-process check can tell; only cut-short files are refused before loading.
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st

from engine.errors import InspectError
from engine.model import EfficientAD, ModelConfig, load_checkpoint, load_teacher_state, pdn, save_checkpoint
from engine.settings import (CameraSettings, LayoutSettings, ProductSettings, Settings,
                             load_settings, load_settings_repaired, save_settings, settings_to_dict)

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT / "resources" / "teachers" / "teacher_small.pth"
N = {"checkpoint bytes": 120, "checkpoint dicts": 200, "teacher bytes": 80, "teacher dicts": 200,
     "settings json": 400, "settings dicts": 500, "settings bytes": 200, "gentl path": 100,
     "cti paths": 100}
FUZZ = dict(deadline=None, derandomize=True, database=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                   HealthCheck.function_scoped_fixture])
CASES: Counter = Counter()


class Fixture(dict):
    """A fixture's files and values; short repr, as hypothesis prints it with each failure."""

    def __repr__(self) -> str:
        return f"<{', '.join(self)}>"
NAN, INF = float("nan"), float("inf")


def _outcome(name: str, load) -> object:
    """Run one case: its result, or None after one clear InspectError. Anything else fails."""
    CASES[name] += 1
    try:
        out = load()
    except InspectError as e:
        text = str(e)
        assert text and "\n" not in text and text.rstrip()[-1] in ".)", text
        CASES[name + " refused"] += 1
        return None
    CASES[name + " loaded"] += 1
    return out


def _report(name: str) -> None:
    n = CASES[name]
    split = (f" ({CASES[name + ' loaded']} loaded, {CASES[name + ' refused']} refused with an "
             "InspectError)") if CASES[name + " loaded"] + CASES[name + " refused"] else ""
    print(f"\nfuzz {name}: {n} cases{split}")
    assert n >= N.get(name, 0) // 2, f"hypothesis ran only {n} cases of {name}"


# ---- mutations -------------------------------------------------------------------------------
@st.composite
def byte_edits(draw, size: int) -> list:
    """Edits of a file of `size` bytes, aimed where the structure is: the head (zip local
    header, pickle), the tail (zip directory) or anywhere (mostly tensor data)."""
    def pos() -> int:
        region = draw(st.sampled_from(["head", "tail", "any"]))
        lo, hi = {"head": (0, min(size, 4096)), "tail": (max(0, size - 4096), size),
                  "any": (0, size)}[region]
        return draw(st.integers(lo, hi - 1))
    kind = draw(st.sampled_from(["cut", "flip", "overwrite", "random", "text"]))
    if kind == "cut":
        return [("cut", pos())]
    if kind == "flip":
        return [("flip", pos(), draw(st.integers(0, 7))) for _ in range(draw(st.integers(1, 12)))]
    if kind == "overwrite":
        return [("overwrite", pos(), draw(st.binary(min_size=1, max_size=64)))]
    if kind == "random":
        return [("replace", draw(st.binary(max_size=2048)))]
    return [("replace", draw(st.text(max_size=300)).encode("utf-8", "surrogatepass"))]


def apply_bytes(data: bytes, edits: list, tensor: torch.Tensor | None = None) -> bytes:
    """The edits applied; ("nan", i) puts a NaN in place of value i of `tensor`, found in
    the file by its bytes (torch stores tensor data uncompressed)."""
    b = bytearray(data)
    for e in edits:
        if e[0] == "nan":
            raw = tensor.detach().contiguous().view(-1)[:4].numpy().tobytes()
            at = bytes(b).find(raw)
            assert at >= 0, "the tensor's bytes are not in the file"
            at += 4 * e[1]
            b[at:at + 4] = np.float32(NAN).tobytes()
        elif e[0] == "cut":
            del b[e[1]:]
        elif e[0] == "flip" and e[1] < len(b):
            b[e[1]] ^= 1 << e[2]
        elif e[0] == "overwrite":
            b[e[1]:e[1] + len(e[2])] = e[2]
        elif e[0] == "replace":
            b = bytearray(e[1])
    return bytes(b)


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=6)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
          torch.uint8, torch.bool, torch.complex64]


@st.composite
def tensors(draw, like: torch.Tensor | None = None) -> torch.Tensor:
    """A tensor of the given one's shape (or any small shape), any dtype, maybe NaN/inf."""
    shape = tuple(like.shape) if like is not None and draw(st.booleans()) else \
        tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    dtype = draw(st.sampled_from(DTYPES))
    t = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 9))))
    if t.numel() and draw(st.booleans()):
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from([NAN, INF, -INF, 1e38]))
    return t.to(dtype)


def values(like=None):
    """Anything a hostile dict could hold in place of a value."""
    return plain | tensors(like if isinstance(like, torch.Tensor) else None)


# ---- model checkpoints -----------------------------------------------------------------------
CONFIG = ModelConfig(image_size=64, out_channels=8)     # tiny: ~12 MB, loads in ~20 ms


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    path = folder / "real.pt"
    torch.manual_seed(0)
    save_checkpoint(EfficientAD(CONFIG), path, {"threshold": 0.5, "model_id": "real"})
    return Fixture(folder=folder, bytes=path.read_bytes(), dict=torch.load(path, weights_only=True))


def _sound_model(model, meta) -> None:
    """What a load that succeeds must give: finite weights and threshold, and a scorer that
    never passes a part on a non-finite score."""
    from engine.scoring import Scorer
    from engine.types import Decision
    assert all(bool(torch.isfinite(t).all()) for t in model.state_dict().values())
    scorer = _outcome("scorer", lambda: Scorer(model, meta, device="cpu", backend="eager"))
    if scorer is None:
        return
    assert math.isfinite(scorer.threshold)
    size = model.config.frame_size or (64, 64)
    result = _outcome("scorer", lambda: scorer.score([np.full((*size, 3), 128, np.uint8)]))
    if result is not None:
        s = float(result.scores[0])
        assert math.isfinite(s) or scorer.decide(s) == Decision.FAIL


@settings(max_examples=N["checkpoint bytes"], **FUZZ)
@example(edits=[("nan", 1)])                   # a NaN weight (case 3)
@example(edits=[("replace", b"this is not a model\n")])
@given(edits=st.data())
def test_checkpoint_bytes(checkpoint, edits):
    data = checkpoint["bytes"]
    if not isinstance(edits, list):
        edits = edits.draw(byte_edits(len(data)))
    path = checkpoint["folder"] / "fuzzed.pt"
    path.write_bytes(apply_bytes(data, edits, checkpoint["dict"]["state_dict"]["student.0.weight"]))
    got = _outcome("checkpoint bytes", lambda: load_checkpoint(path))
    if got is not None:
        _sound_model(*got)


@st.composite
def checkpoint_edits(draw, ck: dict) -> list:
    """1-3 edits of the real checkpoint dict, as (where, key, value-or-None-to-delete)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "version", "config", "state_dict", "meta"]))
        if where == "top":
            key = draw(st.sampled_from(["format", "version", "config", "state_dict", "meta", "extra"]))
        elif where == "version":
            where, key = "top", "version"
        elif where == "config":
            key = draw(st.sampled_from(sorted(ck["config"]) + ["extra"]))
        elif where == "state_dict":
            key = draw(st.sampled_from(sorted(ck["state_dict"]) + ["extra.weight", 7]))
        else:
            key = draw(st.sampled_from(["threshold", "model_id", "holdout_scores"]))
        like = ck.get(where, {}).get(key) if where in ("state_dict", "config") else None
        choice = draw(st.sampled_from(["delete", "value", "value", "nearby"]))
        if choice == "delete":
            out.append((where, key, "<delete>"))
        elif choice == "nearby":               # plausible values: a newer version, other sizes
            out.append((where, key, draw(st.sampled_from(
                [2, 0, -1, True, 1.0, "1", 128, 32, "medium", 16, None, (0, 0, 64, 64), (64, 64),
                 ((0, 0), (60, 0), (30, 60)), NAN, INF, 0.5]))))
        else:
            out.append((where, key, draw(values(like))))
    return out


def apply_checkpoint(ck: dict, edits: list) -> dict:
    ck = {**ck, "config": dict(ck["config"]), "state_dict": dict(ck["state_dict"]),
          "meta": dict(ck["meta"])}
    for where, key, value in edits:
        target = ck if where == "top" else ck.get(where)
        if not isinstance(target, dict):
            continue
        if isinstance(value, str) and value == "<delete>":
            target.pop(key, None)
        else:
            target[key] = value
    return ck


@settings(max_examples=N["checkpoint dicts"], **FUZZ)
@example(edits=[("top", "config", "<delete>")])          # a dict without config (case 1)
@example(edits=[("top", "version", 2)])                  # a newer format
@example(edits=[("config", "image_size", "big")])
@example(edits=[("meta", "threshold", NAN)])             # case 3
@example(edits=[("top", "meta", [1, 2])])
@given(edits=st.data())
def test_checkpoint_dicts(checkpoint, edits):
    if not isinstance(edits, list):
        edits = edits.draw(checkpoint_edits(checkpoint["dict"]))
    path = checkpoint["folder"] / "fuzzed-dict.pt"
    torch.save(apply_checkpoint(checkpoint["dict"], edits), path)
    got = _outcome("checkpoint dicts", lambda: load_checkpoint(path))
    if got is not None:
        _sound_model(*got)
    from engine.scoring import Scorer
    _outcome("checkpoint dicts", lambda: Scorer.from_file(path, device="cpu", backend="eager"))


# ---- teacher files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    sd = torch.load(TEACHER, weights_only=True)
    names = sorted({k.split(".")[0] for k in sd}, key=int)
    anomalib = {f"teacher.conv{names.index(k.split('.')[0]) + 1}.{k.split('.')[1]}": v
                for k, v in sd.items()}
    return Fixture(folder=tmp_path_factory.mktemp("teacher"), bytes=TEACHER.read_bytes(),
                   layouts={"authors": sd, "anomalib": anomalib,
                            "wrapped": {"state_dict": {f"teacher.{k}": v for k, v in sd.items()}}},
                   net=pdn("small", 384))


def _teacher_outcome(teacher, name: str, source) -> None:
    """A refused file leaves the teacher untouched; a loaded one put its own layers in,
    exactly (not broadcast from another shape), all finite."""
    from engine.model import teacher_convs_from_state
    net = teacher["net"]
    before = [t.clone() for t in net.state_dict().values()]
    if _outcome(name, lambda: load_teacher_state(net, source) or True) is None:
        assert all(torch.equal(a, b) for a, b in zip(before, net.state_dict().values()))
        return
    sd = source if isinstance(source, dict) else torch.load(source, weights_only=True)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    for (w, b), conv in zip(teacher_convs_from_state(sd), convs):
        assert w.shape == conv.weight.shape and b is not None and b.shape == conv.bias.shape
        assert torch.equal(conv.weight, w.float()) and torch.equal(conv.bias, b.float())
    assert all(bool(torch.isfinite(t).all()) for t in net.state_dict().values())


@settings(max_examples=N["teacher bytes"], **FUZZ)
@example(edits=[("nan", 5)])                   # a NaN weight: refused, the teacher untouched
@given(edits=st.data())
def test_teacher_bytes(teacher, edits):
    data = teacher["bytes"]
    if not isinstance(edits, list):
        edits = edits.draw(byte_edits(len(data)))
    path = teacher["folder"] / "fuzzed.pth"
    path.write_bytes(apply_bytes(data, edits, teacher["layouts"]["authors"]["3.weight"]))
    _teacher_outcome(teacher, "teacher bytes", path)


@st.composite
def teacher_edits(draw, layouts: dict) -> tuple:
    layout = draw(st.sampled_from(sorted(layouts)))
    keys = sorted(layouts[layout].get("state_dict", layouts[layout]))
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys + ["extra", 3, ("a", 1), "state_dict"]))
        choice = draw(st.sampled_from(["delete", "value", "rename"]))
        value = "<delete>" if choice == "delete" else \
            ("<rename>", draw(st.sampled_from(["teacher.", "model.", "module.", "x", "conv9.", ""]))) \
            if choice == "rename" else draw(values(layouts[layout].get(key)))
        edits.append((key, value))
    return layout, edits


def apply_teacher(layouts: dict, layout: str, edits: list) -> dict:
    top = dict(layouts[layout])
    sd = dict(top["state_dict"]) if "state_dict" in top else top
    for key, value in edits:
        if isinstance(value, str) and value == "<delete>":
            sd.pop(key, None)
        elif isinstance(value, tuple) and value and value[0] == "<rename>":
            if key in sd:
                sd[f"{value[1]}{key}"] = sd.pop(key)
        else:
            sd[key] = value
    if "state_dict" in top:
        top["state_dict"] = sd
    return top


@settings(max_examples=N["teacher dicts"], **FUZZ)
@example(case=("authors", [(7, torch.zeros(3))]))                       # a key that is not text
@example(case=("authors", [("0.bias", torch.zeros(1))]))                # a bias that broadcasts
@example(case=("anomalib", [("teacher.conv2.weight", torch.full((256, 128, 4, 4), NAN))]))
@given(case=st.data())
def test_teacher_dicts(teacher, case):
    if not isinstance(case, tuple):
        case = case.draw(teacher_edits(teacher["layouts"]))
    sd = apply_teacher(teacher["layouts"], *case)
    path = teacher["folder"] / "fuzzed-dict.pth"
    torch.save(sd, path)
    _teacher_outcome(teacher, "teacher dicts", path)
    _teacher_outcome(teacher, "teacher dicts", sd)           # a state handed over in memory


# ---- settings --------------------------------------------------------------------------------
RICH = settings_to_dict(Settings(
    station="line7", camera=CameraSettings(source="folder", path="/data/parts", exposure_us=500.0),
    layout=LayoutSettings(tiling=True, roi=(10, 20, 300, 200),
                          roi_polygon=((10, 20), (300, 20), (100, 200))),
    products={"a": ProductSettings(model_file="a.pt", threshold=0.3, review_below=0.2),
              "b (blue)": ProductSettings()}, current_product="a"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=12)


def test_every_settings_field_has_a_kind():
    """A field added to a settings class must say what it holds, or files with it would be
    'unknown field' and its value dropped."""
    from dataclasses import fields
    from engine.settings import _KINDS, _SECTIONS, StorageSettings
    for cls in (CameraSettings, LayoutSettings, StorageSettings, ProductSettings, Settings):
        names = {f.name for f in fields(cls)} - (set(_SECTIONS) if cls is Settings else set())
        assert names == set(_KINDS[cls]), cls.__name__


def _paths(d, prefix=()):
    """Every key path of a nested dict (where a fuzzed value can go)."""
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


SETTINGS_PATHS = sorted(_paths(RICH))


def _settings_outcome(tmp: Path, name: str, text: bytes) -> None:
    """Both loaders on one file: strict gives valid settings or an InspectError; the app's
    gives valid settings that save and load back unchanged (or InspectError for a file it
    cannot use at all), and no problems only when strict agrees."""
    path = tmp / "settings.json"
    path.write_bytes(text)
    strict = _outcome(name + " (strict)", lambda: load_settings(path))
    if strict is not None:
        strict.validate()
    got = _outcome(name, lambda: load_settings_repaired(path))
    if got is None:
        return
    s, problems = got
    s.validate()
    assert all(str(p) and "\n" not in str(p) for p in problems)
    assert (strict == s) if not problems else strict is None
    save_settings(s, tmp / "again.json")
    assert load_settings(tmp / "again.json") == s


@settings(max_examples=N["settings json"], **FUZZ)
@given(value=json_values)
def test_settings_random_json(tmp_path, value):
    _settings_outcome(tmp_path, "settings json", json.dumps(value).encode())


@settings(max_examples=N["settings dicts"], **FUZZ)
@example(edits=[(("camera",), "sim")])                          # case 2
@example(edits=[(("products",), [{"model_file": "x.pt"}])])     # case 2
@example(edits=[(("products", "a", "threshold"), NAN)])
@example(edits=[(("layout", "roi"), [0, 0, NAN, 1])])
@example(edits=[(("layout",), "x"), (("schema_version",), 1), (("camera", "roi"), [1, 2, 3, 4])])
@example(edits=[(("schema_version",), 3)])
@given(edits=st.lists(st.tuples(st.sampled_from(SETTINGS_PATHS),
                                st.one_of(json_values, st.just("<delete>"),
                                          st.sampled_from([NAN, INF, -1, 0, 10**30, "", True,
                                                           [], {}, "sim", 3]))),
                      min_size=1, max_size=4))
def test_settings_mutated_fields(tmp_path, edits):
    d = json.loads(json.dumps(RICH))
    for path, value in edits:
        target = d
        for k in path[:-1]:
            target = target.get(k) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if value == "<delete>":
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
    _settings_outcome(tmp_path, "settings dicts", json.dumps(d).encode())


@settings(max_examples=N["settings bytes"], **FUZZ)
@example(edits=[("replace", b'{"camera": "sim"}')])            # case 2
@example(edits=[("replace", b'{"station": "x", "products": [1]}')])
@example(edits=[("replace", b"\xff\xfe{}")])                   # not UTF-8
@given(edits=st.data())
def test_settings_bytes(tmp_path, edits):
    data = json.dumps(RICH, indent=2).encode()
    if not isinstance(edits, list):
        edits = edits.draw(byte_edits(len(data)))
    _settings_outcome(tmp_path, "settings bytes", apply_bytes(data, edits))


# ---- GenTL producers -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def producers(tmp_path_factory):
    """A fixed set of places (so each producer file loads once per process)."""
    from engine.camera.producers import VIKY_CTI
    if not VIKY_CTI.exists():
        pytest.skip("genicam wheel without viky.cti")
    d = tmp_path_factory.mktemp("gentl")
    (d / "vendor").mkdir()
    shutil.copy(VIKY_CTI, d / "vendor" / "viky-copy.cti")
    (d / "empty").mkdir()
    (d / "text.txt").write_text("not a producer")
    (d / "garbage.cti").write_bytes(b"\x00garbage" * 50)
    (d / "fake-elf.cti").write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\xff" * 100)
    data = VIKY_CTI.read_bytes()
    for i, cut in enumerate((40, 300, len(data) // 3, len(data) - 100)):
        (d / f"cut-{i}.cti").write_bytes(data[:cut])     # a producer copied only in part
    places = [d / "vendor", d / "empty", d / "missing", d / "missing.cti", d / "text.txt",
              d / "garbage.cti", d / "fake-elf.cti", d / "vendor" / "viky-copy.cti",
              Path("~nosuchuser-x/producer.cti"), d / ("x" * 300), Path("relative/dir")]
    places += [d / f"cut-{i}.cti" for i in range(4)]
    return [str(p) for p in places]


ENV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                   max_size=40)


@settings(max_examples=N["gentl path"], **FUZZ)
@given(data=st.data())
def test_gentl_path_variable(producers, monkeypatch, data):
    from engine.camera import producers as prod
    entries = data.draw(st.lists(st.sampled_from(producers) | ENV_TEXT, max_size=4))
    monkeypatch.setenv(prod.GENTL_PATH_VARIABLE, os.pathsep.join(entries))
    CASES["gentl path"] += 1
    listed = prod.default_producers()
    devices, problems = prod.list_devices()              # never raises: problems are sentences
    assert all(p and "\n" not in p for p in problems)
    if prod.VIKY_CTI in listed:          # the virtual camera only when nothing is named
        assert prod.gentl_path_entries() == ([], []), entries
    for p in listed:
        _outcome("gentl path producers", lambda p=p: prod.check_producer(p))


@settings(max_examples=N["cti paths"], **FUZZ)
@example(path="~nosuchuser-x/producer.cti")
@example(path="p" * 5000)
@given(path=ENV_TEXT)
def test_cti_paths(producers, path):
    from engine.camera.producers import check_producer
    _outcome("cti paths", lambda: check_producer(path))
    for p in producers:
        _outcome("cti paths", lambda p=p: check_producer(p))


def test_zz_report_cases():
    """Runs last in this file: how many cases each loader was given."""
    for name in [*N, "scorer", "gentl path producers", "settings json (strict)",
                 "settings dicts (strict)", "settings bytes (strict)"]:
        if CASES[name]:
            _report(name)
