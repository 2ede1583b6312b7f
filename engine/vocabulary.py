"""The words the app accepts for a model's size, where it runs and its training arithmetic.

One source for every check of them: Settings (engine/settings.py), the command line's
argparse choices (engine/cli.py, the benches), ModelConfig (engine/model.py) and
TrainConfig (engine/train.py). Plain tuples, no torch, so Settings and the GUI import it
cheaply; their order is the order the Settings screen lists them in.
"""
from __future__ import annotations

MODEL_SIZES = ("small", "medium")            # the PDN variants: EfficientAD-S and -M
MODEL_KINDS = ("efficientad", "quick")       # trained networks / nearest neighbours (engine/quick.py)
LEARN_PLANS = ("staged", "quick", "efficientad")   # what Learn builds (engine/staged.py)
DEVICES = ("auto", "cuda", "cpu")            # "auto": CUDA when present (engine/device.py)
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")  # "auto": bf16 where the hardware has it


def spoken(words: tuple[str, ...], quoted: bool = False) -> str:
    """'a, b or c' for a message (each word in quotes if asked)."""
    items = [repr(w) if quoted else w for w in words]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
