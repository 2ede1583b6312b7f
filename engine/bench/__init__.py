"""Benchmarks (`python main.py bench score|camera|log|gui|pipeline`), one module each.

score.py: every scoring path side by side · camera.py: frames received and dropped per
source kind · log.py: the inspection log's write and read rates. The two that need Qt stay
in app/: `app/bench.py` (gui: event-loop stalls while training and scoring) and
`app/bench_pipeline.py` (camera → scoring thread → log with the app's own parts).
Every bench's main(argv) answers user errors through engine.errors.run_command.
"""
