#!/usr/bin/env bash
# Remove inspect-line: the install folder, its desktop entry and units. The data folder
# (settings, models, the inspection log, logs/app.log) stays unless --purge is given.
#
#   PREFIX/uninstall.sh [--purge] [--yes]
set -euo pipefail
PREFIX=$(cd "$(dirname "$0")" && pwd)
PURGE=0
YES=0
for a in "$@"; do
  case "$a" in
    --purge) PURGE=1 ;;
    --yes) YES=1 ;;
    *) echo "usage: $0 [--purge] [--yes]" >&2; exit 2 ;;
  esac
done
[ -x "$PREFIX/bin/inspect-line" ] && [ -d "$PREFIX/venv" ] \
  || { echo "uninstall: $PREFIX does not look like an inspect-line install folder" >&2; exit 1; }
DATA=$(cat "$PREFIX/data-dir.txt" 2>/dev/null || true)
if [ -z "$DATA" ]; then
  DATA=${INSPECT_LINE_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/inspect-line}
fi

if command -v systemctl >/dev/null; then
  systemctl --user disable --now inspect-line.service 2>/dev/null || true
  if [ "$(id -u)" = 0 ] && [ -f /etc/systemd/system/inspect-line-runner@.service ]; then
    systemctl disable --now 'inspect-line-runner@*.service' 2>/dev/null || true
  fi
fi
while read -r f; do
  [ -n "$f" ] && rm -f "$f" && echo "uninstall: removed $f"
done < "$PREFIX/installed-files.txt"
command -v systemctl >/dev/null && systemctl --user daemon-reload 2>/dev/null || true

if [ "$PURGE" = 1 ] && [ -d "$DATA" ]; then
  if [ "$YES" = 0 ]; then
    read -r -p "Delete the data folder $DATA (settings, models, the inspection log)? [y/N] " ok
    [ "$ok" = y ] || [ "$ok" = Y ] || { echo "uninstall: data kept"; PURGE=0; }
  fi
  [ "$PURGE" = 1 ] && rm -rf "$DATA" && echo "uninstall: removed the data folder $DATA"
else
  echo "uninstall: data kept in $DATA (./uninstall.sh --purge removes it)"
fi
rm -rf "$PREFIX"
echo "uninstall: removed $PREFIX"
