#!/usr/bin/env bash
# The GPU check (issue 20 part 4): `python main.py bench gpu` on a machine with an NVIDIA GPU,
# its log and JSON kept in $OUT. Under 8 minutes on one GPU.
#
# Here, once, on a machine that has ../shared/data and PyPI:
#     bash packaging/gpu_check.sh --prepare
# fills out/gpu_check/ (ignored by git; NEVER commit it: the dev sets' licences allow no
# shipping):
#     out/gpu_check/data/    a subset of the dev sets in MVTec layout (60 good training images
#                            and 40 test images with masks per category; about 15 MiB),
#                            made by `python main.py bench gpu --make-subset`
#     out/gpu_check/wheels/  wheels of what the GPU image lacks, for its Python 3.12:
#                            SQLAlchemy (the live pipeline's inspection log). torch-tensorrt
#                            is not carried (TensorRT's libraries are far over the 64 MiB a
#                            device call carries): the check says "not installed" there
#                            unless the image has it.
# On the GPU machine (this workplace's device tool: carry ["out/gpu_check"], timeout_s 560):
#     bash packaging/gpu_check.sh            # extra arguments go to `bench gpu`
# It sets QT_QPA_PLATFORM=offscreen and PYTHONUNBUFFERED=1, installs the carried wheels into
# a scratch folder when the image lacks them, prints nvidia-smi, and writes $OUT/gpu.log and
# $OUT/gpu.json ($OUT defaults to out/gpu_check/result). Without a GPU `bench gpu` says so in
# one sentence and the script exits 2.
set -euo pipefail
cd "$(dirname "$0")/.."
HERE_PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && [ "${1:-}" = "--prepare" ] && HERE_PY=.venv/bin/python

if [ "${1:-}" = "--prepare" ]; then
    "$HERE_PY" main.py bench gpu --make-subset out/gpu_check/data
    sqla=$("$HERE_PY" -c "import sqlalchemy; print(sqlalchemy.__version__)")
    rm -rf out/gpu_check/wheels
    "$HERE_PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d out/gpu_check/wheels "sqlalchemy==$sqla"
    du -sh out/gpu_check
    exit 0
fi

export QT_QPA_PLATFORM=offscreen PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu_check/result}
mkdir -p "$OUT"
if ! "$HERE_PY" -c "import sqlalchemy" 2>/dev/null; then
    if ls out/gpu_check/wheels/*.whl >/dev/null 2>&1; then
        "$HERE_PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target /tmp/gpu-check-site out/gpu_check/wheels/*.whl
        export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "SQLAlchemy is missing and out/gpu_check/wheels was not carried: the pipeline" \
             "section will fail (run --prepare here and carry out/gpu_check)." >&2
    fi
fi
{ if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true; fi
  "$HERE_PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)"
} | tee "$OUT/gpu.log"
set +e
"$HERE_PY" main.py bench gpu --json "$OUT/gpu.json" "$@" 2>&1 | tee -a "$OUT/gpu.log"
status=${PIPESTATUS[0]}
echo "bench gpu exit status $status; log $OUT/gpu.log, results $OUT/gpu.json" | tee -a "$OUT/gpu.log"
exit "$status"
