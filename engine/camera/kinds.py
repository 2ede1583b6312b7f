"""The one vocabulary of camera source kinds: the camera spec (engine/camera/spec.py), the
settings file, the Settings screen and the Live screen's camera choice all use these names.
Kept apart from spec.py so that reading settings does not load the GenICam code."""
from __future__ import annotations

KINDS = ("sim", "folder", "video", "opencv", "genicam")

# What a menu shows for each kind.
LABELS = {"sim": "Simulated production line", "folder": "Folder of images",
          "video": "Video file", "opencv": "OpenCV camera (USB, index in Device)",
          "genicam": "GenICam camera (GenTL producer)"}

# Names older settings files used; read as the kind on the right (the one place they live).
OLD_NAMES = {"simulated": "sim"}


def kind_of(name: str) -> str:
    """A source name as this app spells it: an old settings name becomes its kind."""
    return OLD_NAMES.get(name, name)
