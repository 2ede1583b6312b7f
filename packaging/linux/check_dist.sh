#!/usr/bin/env bash
# make dist-check: install the built artifact into a fresh folder with no network and the
# package index disabled, start the GUI offscreen to Live and quit, learn a quick model
# from real photographs and score one. Prints the artifact size and each step's time.
#
#   packaging/linux/check_dist.sh [DIST_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/../.."
DIST=${1:-$(ls -d dist/inspect-line-*-linux-x86_64 | tail -1)}
DIST=$(cd "$DIST" && pwd)
WORK=$(mktemp -d /tmp/inspect-dist-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PYBIN=$(python3.11 -c 'import sys; print(sys.executable)')   # the real one, not a pyenv shim
# A clean environment: no pip configuration, no index, a fresh HOME; no network at all
# where this user may make a network namespace (unshare -n: root, or user namespaces).
CLEAN=(env -i HOME="$WORK/home" PATH=/usr/bin:/bin LANG=C.UTF-8 PIP_NO_INDEX=1
       PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 OMP_NUM_THREADS=2)
NONET=()
if unshare -n true 2>/dev/null; then NONET=(unshare -n); elif unshare -rn true 2>/dev/null; then NONET=(unshare -rn); fi
[ ${#NONET[@]} -gt 0 ] && echo "check: no network (${NONET[*]})" || echo "check: unshare unavailable: the index is disabled, the network is not cut"
mkdir -p "$WORK/home"
echo "check: artifact $(du -sh "$DIST" | cut -f1) ($DIST)"

t0=$(date +%s.%N)
"${NONET[@]}" "${CLEAN[@]}" "$DIST/install.sh" --prefix "$WORK/opt" --data "$WORK/data" \
  --python "$PYBIN" --no-desktop
t1=$(date +%s.%N)
printf 'check: install %.0f s\n' "$(echo "$t1 - $t0" | bc)"

APP=("${NONET[@]}" "${CLEAN[@]}" QT_QPA_PLATFORM=offscreen "$WORK/opt/bin/inspect-line")
"${APP[@]}" --version
t0=$(date +%s.%N)
"${APP[@]}" --quit-after 0.5
t1=$(date +%s.%N)
printf 'check: first start to Live and quit (--quit-after 0.5) %.1f s\n' "$(echo "$t1 - $t0" | bc)"
t0=$(date +%s.%N)
"${APP[@]}" --quit-after 0.5
t1=$(date +%s.%N)
printf 'check: second start (--quit-after 0.5) %.1f s\n' "$(echo "$t1 - $t0" | bc)"
grep -q "app exited with 0" "$WORK/data/logs/app.log" || { echo "check: the app did not exit cleanly" >&2; exit 1; }

mkdir -p "$WORK/good"
cp "$WORK/opt/app/resources/penalty/"*.jpg "$WORK/good/"
"${APP[@]}" train --kind quick --good "$WORK/good" --out "$WORK/model.pt" --image-size 128 --device cpu
"${APP[@]}" score --model "$WORK/model.pt" --json "$WORK/good/brick.jpg" | tee "$WORK/score.json"
grep -q '"score"' "$WORK/score.json" || { echo "check: score printed no score" >&2; exit 1; }
# the default install has no extras: the ONNX Runtime backend says which extra to add
if "${NONET[@]}" "${CLEAN[@]}" "$WORK/opt/venv/bin/python" -c "import sys; sys.path.insert(0, '$WORK/opt/app')
from engine.errors import InspectError
from engine.fast import OnnxRuntimeRunner
try:
    OnnxRuntimeRunner('model.onnx')
except InspectError as e:
    print('check: without [export]:', e); sys.exit(0)
sys.exit('check: onnxruntime is importable without the [export] extra')"; then :; else exit 1; fi
"${CLEAN[@]}" "$WORK/opt/uninstall.sh"
[ -f "$WORK/data/settings.json" ] && echo "check: uninstall kept the data folder"
echo "check: passed"
