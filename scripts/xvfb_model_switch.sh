#!/usr/bin/env bash
# A model with other classes chosen during playback, as a person does it: a real window under
# Xvfb, File ▸ Open checkpoint… (Ctrl+O) while a video plays, the path typed into the file
# dialog. Before the 2026-12-01 fix the old model's frame in flight reached charts rebuilt for
# 7 classes and the app showed its crash dialog.
#
#   scripts/xvfb_model_switch.sh [OUT_DIR]   (needs xvfb, xdotool, imagemagick)
#
# Writes OUT_DIR/xvfb_switch_before.png (8 classes playing) and xvfb_switch_after.png (the 7-class
# model playing); exits 1 if the app's log holds a traceback or an error dialog.
set -euo pipefail
XVFB_DISPLAY=96
source "$(dirname "$0")/xvfb_session.sh"
write_clip 1500
"$BIN/python" - "$TMP/seven.pt" <<'EOF'
import sys, torch
from gsmc_core.checkpoint import Checkpoint, ModelMeta, save_checkpoint
from gsmc_core.labels import SEVEN_CLASSES
from gsmc_core.model import GSMCNet
torch.manual_seed(0)  # random weights: a stand-in for a RAF-DB model (7 classes)
meta = ModelMeta(arch="resnet18", classes=SEVEN_CLASSES, input_size=65, output_stride=16)
save_checkpoint(Checkpoint(meta=meta, state_dict=GSMCNet(7).state_dict()), sys.argv[1])
EOF
start_app --video "$TMP/clip.mp4"
sleep 12  # the first start prepares the model, then plays
import -window root "$OUT/xvfb_switch_before.png"
xdotool key --window "$WIN" ctrl+o
sleep 2
xdotool type --delay 20 "$TMP/seven.pt"
xdotool key Return
sleep 15  # the new model is exported for this computer, then plays
import -window root "$OUT/xvfb_switch_after.png"
kill -0 "$APP"  # still running
if grep -E "Traceback|Unexpected error|ValueError" "$TMP/app.log"; then
    echo "the app reported an error; its log is above" >&2
    exit 1
fi
echo "wrote $OUT/xvfb_switch_{before,after}.png; the app ran on with no error"
