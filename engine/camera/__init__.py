"""Camera acquisition: GenICam (harvesters), folder and video replay, a simulated line.

    from engine.camera import make_source, Acquisition, list_sources
    acq = Acquisition(make_source("sim"), on_status=print).start()
    frame = acq.wait_frame(timeout=1.0)        # engine.types.Frame, newest untaken
    acq.stop()

Importing this package does not load harvesters; engine.camera.genicam does, on first use.
"""
from __future__ import annotations

from engine.camera.acquisition import Acquisition, AcquisitionConfig, AcquisitionStatus, State
from engine.camera.base import EndOfStream, FrameSource, SourceLost, SourceUnavailable

__all__ = ["Acquisition", "AcquisitionConfig", "AcquisitionStatus", "State", "EndOfStream",
           "FrameSource", "SourceLost", "SourceUnavailable", "make_source", "parse_spec",
           "list_sources", "default_source_spec", "SourceInfo"]


def __getattr__(name: str):
    # spec.py imports genicam/harvesters (a second or so); only pay for it when used
    if name in ("make_source", "parse_spec", "list_sources", "default_source_spec", "SourceInfo"):
        from engine.camera import spec
        return getattr(spec, name)
    raise AttributeError(name)
