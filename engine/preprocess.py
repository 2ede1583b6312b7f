"""Frames -> network input. The ONE place where training and scoring resize and normalise,
so both always see identical pixels."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def frames_to_tensor(frames: list[np.ndarray], image_size: int, device: torch.device) -> torch.Tensor:
    """H×W×3 uint8 RGB frames (any sizes) -> (B,3,S,S) float32 in [0,1] on `device`.

    Resizing happens on the device with antialiasing, so a 5 MP frame shrinks without aliasing
    and without a slow CPU resize when a GPU is present.
    """
    out = []
    for f in frames:
        a = np.ascontiguousarray(f)
        if not a.flags.writeable:          # PIL arrays are read-only; torch wants writable memory
            a = a.copy()
        t = torch.from_numpy(a).to(device, non_blocking=True)
        t = t.permute(2, 0, 1).unsqueeze(0).float()                       # (1,3,H,W) 0..255
        if t.shape[-2:] != (image_size, image_size):
            t = F.interpolate(t, size=(image_size, image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        out.append(t)
    return (torch.cat(out) / 255.0).clamp_(0.0, 1.0)


def frame_to_tensor01(frame: np.ndarray, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """One H×W×3 uint8 frame -> (3,H,W) float32 in [0,1] on `device`, at full resolution."""
    a = np.ascontiguousarray(frame)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a).to(device).permute(2, 0, 1).float() / 255.0
