"""Which torch device runs the networks: CUDA when present, the CPU otherwise."""
from __future__ import annotations

import torch

from engine.errors import InspectError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; "cuda", "cuda:1", "cpu" taken as asked."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InspectError("CUDA was asked for but no CUDA GPU is available; use device 'cpu' or 'auto'.")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise InspectError(f"Unknown device {name!r}; use 'auto', 'cpu' or 'cuda'.") from e
