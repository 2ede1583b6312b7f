#!/usr/bin/env bash
# make dist: the offline installer for Linux x86-64 line PCs.
#
#   packaging/linux/build.sh [--out DIR] [--find-links DIR] [--tar]
#
# Builds dist/inspect-line-VERSION-linux-x86_64/:
#   app/          the committed source (git archive HEAD: main.py, engine/, app/, resources/)
#                 with engine/_build.txt = `git describe` of that commit
#   wheelhouse/   a wheel of every runtime dependency and of the [export] and [postgres]
#                 extras (pip wheel: nothing is built at install time)
#   requirements.txt, requirements-export.txt, requirements-postgres.txt (from pyproject)
#   constraints.txt  name==version of every wheel: the install takes exactly these
#   install.sh, uninstall.sh
# The app runs from app/ (its resources are found beside the code), with a venv of the
# wheelhouse. torch is the one this machine's pip finds for torch==2.14.1 (the CUDA build
# here); --find-links DIR puts DIR first, e.g. a folder holding torch-2.14.1+cpu and
# torchvision-0.29.1+cpu wheels (PEP 440 ranks +cpu above the plain version).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
OUT=$ROOT/dist
FIND_LINKS=()
TAR=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --find-links) FIND_LINKS+=(--find-links "$2"); shift 2 ;;
    --tar) TAR=1; shift ;;
    *) echo "usage: $0 [--out DIR] [--find-links DIR] [--tar]" >&2; exit 2 ;;
  esac
done

VERSION=$("$PY" -c 'import sys; sys.path.insert(0, "."); from engine.version import _from_pyproject; print(_from_pyproject())')
BUILD=$(git describe --always --tags 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- 2>/dev/null; then
  echo "build: the working tree has uncommitted changes; the artifact holds the last commit ($BUILD) only" >&2
fi
NAME=inspect-line-$VERSION-linux-x86_64
DEST=$OUT/$NAME
rm -rf "$DEST"
mkdir -p "$DEST/app" "$DEST/wheelhouse"

git archive HEAD | tar -x -C "$DEST/app"
echo "$BUILD" > "$DEST/app/engine/_build.txt"

# requirements from pyproject: the default install, and one file per extra the line may want
"$PY" - "$DEST" <<'EOF'
import sys, tomllib, pathlib
dest = pathlib.Path(sys.argv[1])
project = tomllib.loads((dest / "app" / "pyproject.toml").read_text())["project"]
(dest / "requirements.txt").write_text("\n".join(project["dependencies"]) + "\n")
for extra in ("export", "postgres"):
    (dest / f"requirements-{extra}.txt").write_text("\n".join(project["optional-dependencies"][extra]) + "\n")
EOF

t0=$(date +%s)
"$PY" -m pip wheel -q "${FIND_LINKS[@]}" --wheel-dir "$DEST/wheelhouse" \
  -r "$DEST/requirements.txt" -r "$DEST/requirements-export.txt" -r "$DEST/requirements-postgres.txt"
# pip and setuptools too, so the venv on the line PC can be brought to the same pip offline
"$PY" -m pip download -q "${FIND_LINKS[@]}" --only-binary=:all: --dest "$DEST/wheelhouse" pip setuptools wheel
echo "build: wheelhouse in $(( $(date +%s) - t0 )) s"

# name==version of every wheel: the install resolves to exactly what was packed
"$PY" - "$DEST" <<'EOF'
import sys, pathlib, re
dest = pathlib.Path(sys.argv[1])
pins = {}
for whl in sorted((dest / "wheelhouse").glob("*.whl")):
    name, version = whl.name.split("-")[:2]
    pins[re.sub(r"[-_.]+", "-", name).lower()] = version
(dest / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
EOF

cp packaging/linux/install.sh packaging/linux/uninstall.sh "$DEST/"
chmod +x "$DEST/install.sh" "$DEST/uninstall.sh"
cat > "$DEST/README.txt" <<EOF
inspect-line $VERSION (build $BUILD), Linux x86-64, offline installer.

  ./install.sh                     # into ~/.local/opt/inspect-line (or --prefix DIR; sudo for /opt)
  ./install.sh --with export       # also the ONNX Runtime / OpenVINO backends (--with export,postgres)
  ./install.sh --autostart         # the GUI full-screen at login (systemd user unit)
  ~/.local/opt/inspect-line/uninstall.sh [--purge]

Needs Python 3.11 with venv (Debian 12: apt-get install python3.11-venv) and the X11
libraries Qt needs (the installer names any missing ones). No network is used.
Data (settings, models, the inspection log, logs/app.log) stays outside the install
folder: \$INSPECT_LINE_HOME, else \$XDG_DATA_HOME/inspect-line (~/.local/share/inspect-line).
EOF

if [ "$TAR" = 1 ]; then
  tar -C "$OUT" -cf "$OUT/$NAME.tar" "$NAME"
  echo "build: $OUT/$NAME.tar"
fi
du -sh "$DEST" | sed 's/^/build: size /'
echo "build: $DEST"
