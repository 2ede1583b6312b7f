"""Dependencies in their place: the default install imports only its runtime dependencies;
each optional package is imported lazily and says which extra to install when absent."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import runtime_closure as rc
from packaging.utils import canonicalize_name

from engine import extras
from engine.errors import InspectError

ROOT = rc.ROOT
SOURCES = [ROOT / "main.py", *sorted((ROOT / "engine").rglob("*.py")),
           *sorted((ROOT / "app").rglob("*.py"))]
OWN = {"engine", "app", "main", "__future__"}


def _imports(tree: ast.AST):
    """(module root, line, inside a function?) for every absolute import."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for a in child.names:
                    yield a.name.split(".")[0], child.lineno, in_function
            elif isinstance(child, ast.ImportFrom) and not child.level and child.module:
                yield child.module.split(".")[0], child.lineno, in_function
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda))
            yield from walk(child, inner)
    yield from walk(tree, False)


def _third_party_imports():
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for root, line, lazy in _imports(tree):
            if root not in sys.stdlib_module_names and root not in OWN:
                yield f"{path.relative_to(ROOT)}:{line}", root, lazy


def test_every_import_is_stdlib_a_runtime_dependency_or_a_lazy_declared_extra():
    runtime = {canonicalize_name(r.name) for r in rc.runtime_requirements()}
    declared_extras = {canonicalize_name(r.name): extra
                       for extra, reqs in rc.extra_requirements().items() for r in reqs}
    providers = rc.import_names()
    problems = []
    for where, root, lazy in _third_party_imports():
        dists = providers.get(root, set())
        if dists & runtime:
            continue
        if root in extras.OPTIONAL:
            dist, extra = extras.OPTIONAL[root]
            if not lazy:
                problems.append(f"{where}: {root} (extra [{extra}]) imported at module level")
            elif declared_extras.get(canonicalize_name(dist)) != extra:
                problems.append(f"{where}: {dist} is not in pyproject's [{extra}] extra")
            continue
        problems.append(f"{where}: {root} ({', '.join(dists) or 'not installed'}) is neither a "
                        "runtime dependency nor an optional package of engine/extras.py")
    assert not problems, "\n".join(problems)


def test_optional_packages_are_only_reached_through_engine_extras():
    """A bare `import onnxruntime` in a function would give Python's message, not the extra's."""
    bare = [f"{where}: import {root}" for where, root, lazy in _third_party_imports()
            if root in extras.OPTIONAL]
    assert not bare, "use engine.extras.require:\n" + "\n".join(bare)


def test_the_scanner_sees_both_kinds_of_import():
    tree = ast.parse("import numpy\nfrom scipy import ndimage\ndef f():\n    import onnx\n")
    assert list(_imports(tree)) == [("numpy", 1, False), ("scipy", 2, False), ("onnx", 4, True)]


@pytest.mark.parametrize("module, call", [
    ("onnx", lambda p: __import__("engine.fast", fromlist=["x"]).export_onnx(_tiny_model(), p)),
    ("onnxruntime", lambda p: __import__("engine.fast", fromlist=["x"]).OnnxRuntimeRunner(p)),
    ("openvino", lambda p: __import__("engine.fast", fromlist=["x"]).OpenVinoRunner(p)),
    ("psycopg", lambda p: _postgres_engine()),
    ("sklearn", lambda p: extras.require("sklearn.metrics", "distill-teacher's backbone probe")),
])
def test_a_missing_optional_package_is_one_sentence_naming_its_extra(module, call, monkeypatch,
                                                                     tmp_path):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)          # import now fails as if absent
    with pytest.raises(InspectError) as info:
        call(tmp_path / "model.onnx")
    text = str(info.value)
    _, extra = extras.OPTIONAL[module]
    assert f"inspect-line[{extra}]" in text and f"--with {extra}" in text
    assert text.count(". ") == 0 and text.endswith(".")      # one sentence


def test_a_postgres_url_without_psycopg_is_refused_when_settings_are_checked(monkeypatch, tmp_path):
    from engine.log.database import check_place
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(InspectError, match=r"inspect-line\[postgres\]"):
        check_place("postgresql://line@server/inspect", tmp_path / "pictures")


def _tiny_model():
    from engine.model import EfficientAD, ModelConfig
    return EfficientAD(ModelConfig())


def _postgres_engine():
    from sqlalchemy.engine import make_url

    from engine.log.database import make_engine
    return make_engine(make_url("postgresql+psycopg://line@127.0.0.1:1/none"))


# -- the default install, alone ---------------------------------------------------------
def _runtime_only_env(base: Path) -> Path:
    """A venv whose site-packages holds links to the files of the runtime dependencies'
    closure only (as `pip install .` would install them; the extras' packages are absent).
    Links, not copies: the same bytes as this environment's, in seconds. A top-level folder
    that only closure members own is one link (its __pycache__ comes along: no recompiling
    torch); a folder shared with a package outside the closure is linked file by file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base)], check=True,
                   timeout=120)
    site = base / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    wanted = rc.closure(rc.runtime_requirements())
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for f in dist.files or []:
            owners.setdefault(f.parts[0], set()).add(name)
    linked: set[Path] = set()
    for name, dist in wanted.items():
        assert dist.files, f"{name} has no RECORD: cannot tell its files"
        for f in dist.files:
            top = f.parts[0]
            if top == ".." or "__pycache__" in f.parts or Path(top) in linked:
                continue
            whole = len(f.parts) > 1 and owners[top] <= set(wanted)
            rel = Path(top) if whole else Path(*f.parts)
            src, dst = Path(dist.locate_file(rel)), site / rel
            if rel not in linked and src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src)
                linked.add(rel)
    return base / "bin" / "python"


def _all_modules() -> list[str]:
    names = ["main"]
    for path in SOURCES[1:]:
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


@pytest.mark.isolated_env
def test_every_module_imports_with_the_runtime_dependencies_only(tmp_path):
    python = _runtime_only_env(tmp_path / "venv")
    modules = _all_modules()
    script = ("import importlib, sys\n"
              "for m in ('onnx', 'onnxruntime', 'openvino', 'psycopg', 'sklearn', 'pytest'):\n"
              "    try:\n        importlib.import_module(m)\n"
              "    except ImportError:\n        pass\n"
              "    else:\n        sys.exit(f'{m} is visible: the environment is not the default install')\n"
              f"for m in {modules!r}:\n    importlib.import_module(m)\n"
              "from engine.version import version_text\nprint('imported', len(sys.modules), version_text())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONNOUSERSITE="1", QT_QPA_PLATFORM="offscreen",
               OMP_NUM_THREADS="1")
    out = subprocess.run([str(python), "-s", "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "imported" in out.stdout
