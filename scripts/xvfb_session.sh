# Sourced by the scripts/xvfb_*.sh checks: OUT (first argument, default docs/screenshots), BIN,
# a temporary folder TMP, a private X server on display XVFB_DISPLAY (set by the caller),
# and settings and logs kept out of the user's. APP is killed with the server at the end.
OUT=${1:-docs/screenshots}
BIN=${BIN:-.venv/bin}
mkdir -p "$OUT"
TMP=$(mktemp -d)
APP=
trap 'kill $APP $XVFB 2>/dev/null || true; rm -rf "$TMP"' EXIT
Xvfb ":$XVFB_DISPLAY" -screen 0 1400x900x24 -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
export DISPLAY=":$XVFB_DISPLAY" QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$TMP/config" XDG_STATE_HOME="$TMP/state"
