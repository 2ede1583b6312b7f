"""The live engine (no Qt): one object owns the live path of a frame.

    camera settings -> CameraSettings.source_spec() -> engine.camera.make_source
      -> CameraFeed: the acquisition thread, latest-frame slot, the one rate measurement
      -> Pipeline (pipelined, engine/line/stages.py): intake (capture, trigger gate, log
         guard, Scorer.prepare) -> scoring thread (Scorer.infer) -> finishing (Scorer.finish,
         decide -> Verdict, overlay, InspectionRecord -> log writer; LiveResult -> on_result)
    ModelStatus -> on_model (once per model change); FeedStatus -> on_status

Clients (the GUI's Services, `python main.py bench pipeline`, tests) only start, stop,
set the model and thresholds, capture frames and read what the callbacks hand them:
frozen values of plain fields and numpy arrays. start() and stop() never wait.
"""
from engine.line.feed import CameraFeed, source_for
from engine.line.pipeline import Pipeline
from engine.line.values import FeedStatus, LiveResult, ModelSpec, ModelStatus

__all__ = ["CameraFeed", "source_for", "Pipeline", "FeedStatus", "LiveResult", "ModelSpec",
           "ModelStatus"]
