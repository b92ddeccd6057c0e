#!/usr/bin/env bash
# The Live tab as a person meets it: a real window under Xvfb, a real video, keys sent with
# xdotool to whatever control has focus, and screenshots of what is on screen.
#
#   scripts/xvfb_keys.sh [OUT_DIR]      (needs xvfb, xdotool, imagemagick; Debian: apt install)
#
# Writes OUT_DIR/xvfb_playing.png, xvfb_paused.png (Space after Tab moved the focus onto a
# control), xvfb_stepped.png (→ twice), xvfb_end.png (Space again, played to the end: paused on
# the last frame), xvfb_end_back.png (← at the end) and xvfb_training_small.png (the Training
# tab at the smallest window): look at them (the play button, the frame number and the status
# bar say whether each key did what it should).
set -euo pipefail
XVFB_DISPLAY=97
source "$(dirname "$0")/xvfb_session.sh"
write_clip 500
start_app --video "$TMP/clip.mp4"
sleep 12  # the first start prepares the model, then plays
import -window root "$OUT/xvfb_playing.png"
# Tab moves the focus through the controls; Space must pause whatever has it
xdotool key --window "$WIN" Tab Tab Tab
sleep 0.3
xdotool key --window "$WIN" space
sleep 1.5
import -window root "$OUT/xvfb_paused.png"
xdotool key --window "$WIN" Right
sleep 1
xdotool key --window "$WIN" Right
sleep 1.5
import -window root "$OUT/xvfb_stepped.png"
xdotool key --window "$WIN" space  # play on to the end (500 frames, 20 s at 1x)
sleep 30
import -window root "$OUT/xvfb_end.png"
xdotool key --window "$WIN" Left
sleep 1.5
import -window root "$OUT/xvfb_end_back.png"
# the Training tab at the smallest window Qt allows (910x593; with no window manager on Xvfb
# nothing would stop xdotool from making it smaller than that, which no desktop allows)
xdotool windowsize "$WIN" 910 593
sleep 0.5
xdotool mousemove --window "$WIN" 152 32 click 1
sleep 1.5
import -window root "$OUT/xvfb_training_small.png"
echo "wrote $OUT/xvfb_{playing,paused,stepped,end,end_back,training_small}.png"
