#!/usr/bin/env bash
# Install (or upgrade) inspect-line from this folder, with no network.
#
#   ./install.sh [--prefix DIR] [--data DIR] [--with export,postgres] [--python PY]
#                [--autostart] [--runner] [--headless] [--no-desktop]
#
#   --prefix DIR   install folder (default ~/.local/opt/inspect-line; /opt/inspect-line as root)
#   --data DIR     data folder: settings, models, the inspection log, logs/app.log. Default
#                  $INSPECT_LINE_HOME, else $XDG_DATA_HOME/inspect-line (~/.local/share/...).
#                  Never inside the install folder, so an upgrade or uninstall keeps it.
#   --with LIST    extras from the wheelhouse: export (ONNX Runtime, OpenVINO), postgres
#   --autostart    the GUI full-screen at login: systemd user unit inspect-line.service
#   --runner       (root) the headless line runner as a system service:
#                  /etc/systemd/system/inspect-line-runner@.service, enabled for --user-of
#   --headless     no GUI on this PC: skip the X11 library check and the desktop entry
# Upgrading: run the newer folder's install.sh with the same --prefix; app/ and venv/ are
# replaced (the old ones are kept until the new venv works), the data folder is not touched.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" = 0 ]; then PREFIX=/opt/inspect-line; else PREFIX=$HOME/.local/opt/inspect-line; fi
DATA=""
WITH=""
PY=""
AUTOSTART=0
RUNNER=0
HEADLESS=0
DESKTOP=1
RUN_USER=${SUDO_USER:-$(id -un)}
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --with) WITH=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --autostart) AUTOSTART=1; shift ;;
    --runner) RUNNER=1; shift ;;
    --user-of) RUN_USER=$2; shift 2 ;;
    --headless) HEADLESS=1; DESKTOP=0; shift ;;
    --no-desktop) DESKTOP=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "install: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "install: $*"; }
die() { echo "install: $*" >&2; exit 1; }

PREFIX=$(mkdir -p "$PREFIX" && cd "$PREFIX" && pwd)
if [ -n "$DATA" ]; then
  DATA=$(mkdir -p "$DATA" && cd "$DATA" && pwd)
  case "$DATA/" in "$PREFIX"/*) die "the data folder $DATA must not lie inside the install folder $PREFIX (an upgrade would lose it)" ;; esac
fi

# Python 3.11 with venv: the wheels are cp311.
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || die "Python 3.11 is needed (Debian 12: sudo apt-get install -y python3.11 python3.11-venv)."
"$PY" -c 'import ensurepip, venv' 2>/dev/null \
  || die "Python's venv module is missing; install it with: sudo apt-get install -y python3.11-venv"

# The X11 libraries Qt's xcb plugin needs: one apt-get line instead of Qt's message later.
if [ "$HEADLESS" = 0 ]; then
  QT_QPA_PLATFORM=xcb "$PY" -I "$HERE/app/engine/syslibs.py" >/dev/null \
    || { QT_QPA_PLATFORM=xcb "$PY" -I "$HERE/app/engine/syslibs.py" || true
         die "install those, then run ./install.sh again (or --headless for a PC without a screen)."; }
fi

REQS=(-r "$HERE/requirements.txt")
for extra in ${WITH//,/ }; do
  [ -f "$HERE/requirements-$extra.txt" ] || die "no extra '$extra' in this installer (export, postgres)"
  REQS+=(-r "$HERE/requirements-$extra.txt")
done

# New venv and app beside the old ones; swapped in only when the install worked.
rm -rf "$PREFIX/venv.new" "$PREFIX/app.new"
t0=$(date +%s)
"$PY" -m venv "$PREFIX/venv.new"
PIP=(env PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null "$PREFIX/venv.new/bin/python" -m pip)
"${PIP[@]}" install -q --no-index --find-links "$HERE/wheelhouse" --upgrade pip
"${PIP[@]}" install -q --no-index --find-links "$HERE/wheelhouse" -c "$HERE/constraints.txt" "${REQS[@]}"
cp -a "$HERE/app" "$PREFIX/app.new"
for part in venv app; do
  rm -rf "$PREFIX/$part.old"
  [ -e "$PREFIX/$part" ] && mv "$PREFIX/$part" "$PREFIX/$part.old"
  mv "$PREFIX/$part.new" "$PREFIX/$part"
done
# The venv was made as venv.new: its console scripts' #! lines still say so, but nothing
# here runs them (the launcher calls venv/bin/python, which finds its packages by itself).
rm -rf "$PREFIX/venv.old" "$PREFIX/app.old"
say "installed in $(( $(date +%s) - t0 )) s into $PREFIX"

mkdir -p "$PREFIX/bin"
{
  echo '#!/bin/sh'
  echo "# inspect-line launcher (written by install.sh). Data: see the app's About."
  [ -n "$DATA" ] && echo ": \"\${INSPECT_LINE_HOME:=$DATA}\"; export INSPECT_LINE_HOME"
  echo "exec \"$PREFIX/venv/bin/python\" \"$PREFIX/app/main.py\" \"\$@\""
} > "$PREFIX/bin/inspect-line"
chmod +x "$PREFIX/bin/inspect-line"
cp "$HERE/uninstall.sh" "$PREFIX/uninstall.sh"
chmod +x "$PREFIX/uninstall.sh"
: > "$PREFIX/installed-files.txt"
echo "${DATA}" > "$PREFIX/data-dir.txt"

# a system unit's %h is root's home whatever User= says: spell the runner user's folder out
RUN_HOME=$(getent passwd "$RUN_USER" 2>/dev/null | cut -d: -f6)
fill() {   # template -> file with @PREFIX@, @DATA@, @USER@ filled in
  sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@DATA@|${DATA:-${RUN_HOME:-$HOME}/.local/share/inspect-line}|g" \
      -e "s|@USER@|$RUN_USER|g" "$1" > "$2"
  echo "$2" >> "$PREFIX/installed-files.txt"
}
if [ "$DESKTOP" = 1 ]; then
  apps=${XDG_DATA_HOME:-$HOME/.local/share}/applications
  [ "$(id -u)" = 0 ] && apps=/usr/share/applications
  mkdir -p "$apps"
  fill "$PREFIX/app/packaging/linux/inspect-line.desktop" "$apps/inspect-line.desktop"
  say "desktop entry $apps/inspect-line.desktop"
fi
if [ "$AUTOSTART" = 1 ]; then
  units=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
  mkdir -p "$units"
  fill "$PREFIX/app/packaging/linux/inspect-line.service" "$units/inspect-line.service"
  if command -v systemctl >/dev/null && systemctl --user daemon-reload 2>/dev/null; then
    systemctl --user enable inspect-line.service && say "the GUI starts full-screen at login"
  else
    say "wrote $units/inspect-line.service; enable it in the operator's session: systemctl --user enable inspect-line.service"
  fi
fi
if [ "$RUNNER" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "--runner installs a system service: run as root (sudo)"
  fill "$PREFIX/app/packaging/linux/inspect-line-runner@.service" /etc/systemd/system/inspect-line-runner@.service
  systemctl daemon-reload && systemctl enable "inspect-line-runner@$RUN_USER.service" \
    && say "headless runner: systemctl start inspect-line-runner@$RUN_USER (journalctl -u it for its log)"
fi
"$PREFIX/bin/inspect-line" --version
say "start it with $PREFIX/bin/inspect-line; uninstall with $PREFIX/uninstall.sh [--purge]"
