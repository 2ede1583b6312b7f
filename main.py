"""Command line of the inspection app. With no command it starts the GUI.

Each command lives next to the code it drives; this file only dispatches, so a newcomer
sees every entry point in one table.
"""
from __future__ import annotations

import importlib
import sys

# command -> "module:function"; each function takes argv (list[str]) and returns an exit code.
COMMANDS = {
    "gui": ("app.main:main", "start the desktop app (the default)"),
    "train": ("engine.cli:train_main", "learn good parts from a folder of images"),
    "score": ("engine.cli:score_main", "score images with a trained model"),
    "eval": ("engine.cli:eval_main", "train and evaluate on an MVTec-layout data set"),
    "calibrate": ("engine.cli:calibrate_main", "set a trained model's threshold again (e.g. another false-reject target)"),
    "distill-teacher": ("engine.distill:main", "distill the ImageNet teacher PDN from a backbone"),
    "cameras": ("engine.camera.cli:cameras_main", "list GenTL producers, devices and sources"),
    "grab": ("engine.camera.cli:grab_main", "save frames from a source"),
    "line": ("engine.line.runner:line_main", "run the line without a GUI: camera, scoring, log, OPC UA/Modbus/REST outputs"),
    "audit": ("app.audit_view:audit_main", "print the audit trail: who changed what, when (--since DAY)"),
    "bench": (None, "benchmarks: score, camera, log, gui, pipeline, line, gpu, curve"),
}
# bench target -> "module:function"
BENCHES = {
    "score": "engine.bench.score:main",
    "camera": "engine.bench.camera:main",
    "log": "engine.bench.log:main",
    "gui": "app.bench:main",                       # needs Qt: stays in app/
    "pipeline": "app.bench_pipeline:main",         # needs Qt: stays in app/
    "line": "engine.bench.line:main",              # verdict -> OPC UA subscription / Modbus read
    "gpu": "engine.bench.gpu:main",                # every CUDA path, training, detection, live line
    "curve": "engine.bench.curve:main",            # detection at snapshots of one training, and why
}


def _call(spec: str, argv: list[str]) -> int:
    module, func = spec.split(":")
    return int(getattr(importlib.import_module(module), func)(argv) or 0)


def _usage() -> str:
    lines = ["usage: python main.py [COMMAND] [ARGS...]", "", "commands:"]
    lines += [f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "python main.py COMMAND --help for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--") and argv[0] not in ("--help",):
        return _call(COMMANDS["gui"][0], argv)       # GUI options such as --quit-after
    command, rest = argv[0], argv[1:]
    if command in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if command == "bench":
        if not rest or rest[0] not in BENCHES:
            print("usage: python main.py bench {" + ",".join(BENCHES) + "} [OPTIONS]", file=sys.stderr)
            return 2
        return _call(BENCHES[rest[0]], rest[1:])
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return _call(COMMANDS[command][0], rest)


if __name__ == "__main__":
    sys.exit(main())
