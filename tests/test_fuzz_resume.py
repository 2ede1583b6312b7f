"""Property-based fuzzing of the resume-file loader (engine.train.read_resume + restore_resume).

Whatever lies at OUT.partial.pt (a real resume file with bytes flipped, overwritten or cut
off, random bytes, text, or the real resume dict with one value swapped for garbage or
removed), reading and restoring it either works or raises InspectError: never another
exception, never a traceback for the user.

Cases: 200 mutated files + 250 mutated dicts (fixed seed, `derandomize`), about 25 s on
two shared cores; the training that makes the real file takes a few seconds more.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.errors import InspectError
from engine.model import EfficientAD, ModelConfig
from engine.train import (TrainConfig, TrainingCancelled, _fingerprint, check_resume,
                          make_optimizer, read_resume, restore_resume, train)
from synthetic import make_part

N_BYTES, N_DICTS = 200, 250
FUZZ = dict(deadline=None, derandomize=True, database=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                   HealthCheck.data_too_large])
CASES = {"bytes": 0, "dicts": 0, "loaded": 0, "refused": 0}


class Run:
    """One real resume file (a tiny run stopped at step 3) and what checks it."""

    def __init__(self, folder):
        self.cfg = TrainConfig(model=ModelConfig(image_size=64), steps=20, teacher="random",
                               penalty="none", device="cpu", precision="fp32")
        rng = np.random.default_rng(0)
        images = [make_part(rng)[0] for _ in range(6)]
        self.fingerprint = _fingerprint(images)
        self.path = folder / "m.pt.partial.pt"
        calls = iter(range(10 ** 6))
        with pytest.raises(TrainingCancelled):
            train(self.cfg, images, should_stop=lambda: next(calls) >= 3, resume_path=self.path)
        self.data = bytearray(self.path.read_bytes())
        self.state = torch.load(self.path, map_location="cpu", weights_only=True)
        self.model = EfficientAD(self.cfg.model)
        self.fuzzed = folder / "fuzzed.partial.pt"
        self.paths = sorted(set(_paths(self.state)), key=str)

    def restore(self, state: dict) -> None:
        opt, sched = make_optimizer(self.model, self.cfg)
        restore_resume(self.fuzzed, state, self.model, opt, sched, random.Random(0))

    def load_file(self) -> None:
        self.restore(read_resume(self.fuzzed, self.cfg, self.fingerprint))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rng_state = torch.get_rng_state()
    yield Run(tmp_path_factory.mktemp("fuzz"))
    torch.set_rng_state(rng_state)      # a restored file sets torch's generator


def _outcome(kind: str, fn) -> None:
    """Load, or InspectError with a sentence; anything else fails the test."""
    CASES[kind] += 1
    try:
        fn()
        CASES["loaded"] += 1
    except InspectError as e:
        assert str(e).endswith(".") and "\n" not in str(e)
        CASES["refused"] += 1


def test_the_real_file_loads(run):
    run.fuzzed.write_bytes(run.data)
    run.load_file()
    assert run.state["step"] == 3


# -- mutated bytes --------------------------------------------------------------------------
def _offsets(n: int):
    """The pickle (head) and the zip directory (tail) matter most; tensor data is the bulk."""
    return st.one_of(st.integers(0, min(n, 65536) - 1), st.integers(max(0, n - 65536), n - 1),
                     st.integers(0, n - 1))


@st.composite
def byte_mutations(draw, n: int):
    kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "garbage", "text"]))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(_offsets(n), st.integers(0, 7)), min_size=1, max_size=8))
    if kind == "overwrite":
        return kind, (draw(_offsets(n)), draw(st.binary(min_size=1, max_size=64)))
    if kind == "truncate":
        return kind, draw(st.one_of(st.integers(0, 4096), _offsets(n)))
    if kind == "garbage":
        return kind, draw(st.binary(max_size=4096))
    return kind, draw(st.text(max_size=400)).encode()


@settings(max_examples=N_BYTES, **FUZZ)
@given(data=st.data())
def test_mutated_bytes_load_or_raise_inspect_error(run, data):
    kind, arg = data.draw(byte_mutations(len(run.data)))
    buf = run.data
    if kind == "flip":
        out = bytearray(buf)
        for offset, bit in arg:
            out[offset] ^= 1 << bit
    elif kind == "overwrite":
        offset, chunk = arg
        out = bytearray(buf)
        out[offset:offset + len(chunk)] = chunk
    elif kind == "truncate":
        out = buf[:arg]
    else:
        out = arg
    run.fuzzed.write_bytes(out)
    _outcome("bytes", run.load_file)


# -- mutated dicts --------------------------------------------------------------------------
def _paths(value, prefix=(), depth=0):
    """Every place in the resume dict a value can be swapped (not inside tensors or tuples)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield prefix + (key,)
        if depth < 4:
            yield from _paths(child, prefix + (key,), depth + 1)


def _garbage_for(old):
    plain = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                      st.lists(st.integers(-5, 700), max_size=4), st.just({}), st.just([]),
                      st.just(()), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                      st.just(Path("not/plain")))      # an object weights_only refuses to load
    if isinstance(old, tuple):      # py_rng: tuples of the right length with wrong parts
        plain = st.one_of(plain, st.tuples(st.integers(-1, 4), st.just(old[1]), st.none()),
                          st.tuples(st.just(3), st.lists(st.integers(-1, 2 ** 33), min_size=625,
                                                         max_size=625).map(tuple), st.none()),
                          st.tuples(st.just(3), st.just(old[1]), st.text(max_size=3)))
    if not isinstance(old, torch.Tensor):
        return st.one_of(plain, st.just(torch.zeros(3)))
    return st.one_of(plain, st.sampled_from(sorted(TENSOR_KINDS)).map(lambda k: TENSOR_KINDS[k](old)))


# a tensor's value swapped for one of another shape, type or layout, or not finite
TENSOR_KINDS = {
    "zeros": torch.zeros_like,
    "nan": lambda t: torch.full_like(t, float("nan")) if t.is_floating_point() else t.float(),
    "inf": lambda t: torch.full_like(t, float("inf")) if t.is_floating_point() else t.reshape(-1)[:0],
    "negative": lambda t: -t if t.is_floating_point() else t.reshape(-1).flip(0).reshape(t.shape),
    "double": lambda t: t.double(),
    "int": lambda t: t.to(torch.int64),
    "flat": lambda t: t.reshape(-1)[:max(1, t.numel() - 1)],
    "short": lambda t: t.reshape(-1)[:1],
    "sparse": lambda t: t.double().reshape(-1)[:4].to_sparse(),
}


def _get(state, path):
    for key in path:
        state = state[key]
    return state


@settings(max_examples=N_DICTS, **FUZZ)
@given(data=st.data())
def test_mutated_dicts_load_or_raise_inspect_error(run, data):
    path = data.draw(st.sampled_from(run.paths))
    parent, key = _get(run.state, path[:-1]), path[-1]
    old = parent[key]
    delete = data.draw(st.booleans().map(lambda b: b and isinstance(parent, dict)))
    if delete:
        del parent[key]
    else:
        parent[key] = data.draw(_garbage_for(old))
    try:
        if data.draw(st.integers(0, 5)) == 0:     # now and then through a file (weights_only)
            torch.save(run.state, run.fuzzed)
            _outcome("dicts", run.load_file)
        else:
            _outcome("dicts", lambda: run.restore(
                check_resume(run.fuzzed, run.state, run.cfg, run.fingerprint)))
    finally:
        parent[key] = old


def test_report_cases(run):
    """Runs last in this file: says how many cases ran (pytest -s shows it) and that both
    kinds of outcome were reached."""
    print(f"\nresume fuzz: {CASES}")
    if CASES["bytes"] + CASES["dicts"] < N_BYTES + N_DICTS:
        pytest.skip("run with the two fuzz tests to count their cases")
    assert CASES["loaded"] > 0 and CASES["refused"] > 0
