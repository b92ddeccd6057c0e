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

# WIN: the app's window, once it shows (run after starting APP with its log in $TMP/app.log);
# if the app exits first or no window shows within 120 s, say so with the log's end and stop
app_window() {
    for _ in $(seq 240); do
        if ! kill -0 "$APP" 2>/dev/null; then
            echo "gsmc-desktop exited before its window showed; the end of its log:" >&2
            tail -20 "$TMP/app.log" >&2
            exit 1
        fi
        WIN=$(xdotool search --name "GSMC —" 2>/dev/null | head -1) && [ -n "$WIN" ] && return 0
        sleep 0.5
    done
    echo "no gsmc-desktop window after 120 s; the end of its log:" >&2
    tail -20 "$TMP/app.log" >&2
    exit 1
}

# start_app ARGS...: gsmc-desktop with ARGS (its log in $TMP/app.log), its window found (WIN),
# sized 1400x880 and focused, as every drive begins
start_app() {
    "$BIN/gsmc-desktop" "$@" >"$TMP/app.log" 2>&1 &
    APP=$!
    app_window
    xdotool windowsize "$WIN" 1400 880 windowfocus --sync "$WIN"
}

# write_clip FRAMES: $TMP/clip.mp4, the shipped carphone clip looped to FRAMES frames at 25 fps
write_clip() {
    "$BIN/python" - "$TMP/clip.mp4" "$1" <<'PYEOF'
import sys, cv2
from gsmc_core.resources import asset_path
from gsmc_core.frames.workloads import clip_frames, read_clip
writer = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 360))
for frame in clip_frames(read_clip(str(asset_path("videos", "carphone_qcif.mp4"))), 1, int(sys.argv[2])):
    writer.write(frame)
writer.release()
PYEOF
}
