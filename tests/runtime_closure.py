"""The runtime dependencies' closure, read from pyproject.toml and the installed metadata.

Used by tests/test_dependencies.py (which imports must be declared) and by its isolated
environment (only these distributions' files are visible there)."""
from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def runtime_requirements() -> list[Requirement]:
    return [Requirement(r) for r in pyproject()["project"]["dependencies"]]


def extra_requirements() -> dict[str, list[Requirement]]:
    return {k: [Requirement(r) for r in v]
            for k, v in pyproject()["project"].get("optional-dependencies", {}).items()}


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def closure(reqs: list[Requirement]) -> dict[str, metadata.Distribution]:
    """canonical name -> installed distribution, for `reqs` and everything they require."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(r, set(r.extras)) for r in reqs]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        dist = found.get(name) or metadata.distribution(req.name)
        found[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if _applies(sub, extras):
                todo.append((sub, set(sub.extras)))
    return found


def import_names() -> dict[str, set[str]]:
    """top-level import name -> canonical distribution names that provide it."""
    return {mod: {canonicalize_name(d) for d in dists}
            for mod, dists in metadata.packages_distributions().items()}
