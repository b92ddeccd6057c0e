#!/usr/bin/env bash
# The Review tab as a person meets it: a real window under Xvfb, keys sent with xdotool.
#
#   scripts/xvfb_review.sh [OUT_DIR]    (needs xvfb, xdotool, imagemagick; about 3 minutes)
#
# Trains a tiny run on FERPlus (../shared/data/ferplus, or GSMC_FERPLUS), opens the app on the
# Review tab with that run and dataset (as remembered from a last review), then: Alt+S scores
# (the button's key), Space keeps the first suspect's label, 3 sets the second's to class 3.
# Checks the review log holds exactly those two decisions and writes OUT_DIR/xvfb_review.png.
set -euo pipefail
XVFB_DISPLAY=96
source "$(dirname "$0")/xvfb_session.sh"
DATA=${GSMC_FERPLUS:-../shared/data/ferplus}
OMP_NUM_THREADS=1 "$BIN/gsmc" train --method ce --dataset ferplus --data-root "$DATA" \
    --limit-train 200 --limit-eval 64 --epochs 1 --input-size 33 --output-stride 8 \
    --out "$TMP/run" >"$TMP/train.log" 2>&1
"$BIN/python" - "$TMP/run/best.pt" "$DATA" <<'PYEOF'
import sys
from PySide6.QtCore import QCoreApplication, QSettings
QCoreApplication.setOrganizationName("GSMC")
QCoreApplication.setApplicationName("GSMC")
s = QSettings()
s.setValue("window/tab", 3)  # the Review tab
s.setValue("review/dataset", "ferplus")
s.setValue("review/data_root", sys.argv[2])
s.setValue("review/checkpoint", sys.argv[1])
s.sync()
PYEOF
start_app
sleep 3
xdotool key --window "$WIN" alt+s  # Score, by the button's key
LOG="$TMP/run/review/decisions.csv"
sleep 20  # scoring 200 faces with a small model: a few seconds, the first start more
xdotool key --window "$WIN" space
sleep 1
xdotool key --window "$WIN" 3
sleep 1
import -window root "$OUT/xvfb_review.png"
"$BIN/python" - "$LOG" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
actions = [(r["action"], r["label"]) for r in rows]
print("review log:", actions)
assert len(actions) == 2 and actions[0] == ("keep", "") and actions[1][0] == "set", actions
PYEOF
echo "wrote $OUT/xvfb_review.png"
