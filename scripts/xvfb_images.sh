#!/usr/bin/env bash
# The Images tab as a person meets it: a real window under Xvfb, photos given on the command line
# (as a file manager's "Open with" does), one given twice, one without a face, then Delete.
#
#   scripts/xvfb_images.sh [OUT_DIR]      (needs xvfb, xdotool, imagemagick; Debian: apt install)
#
# Writes OUT_DIR/xvfb_images.png (the photo listed once, faces numbered left to right, the CAM
# of every class), xvfb_images_device_menu.png and xvfb_images_mirror.png (Device ▸ Average each
# face with its mirror image by keys: the photos analysed again, "mirror-averaged" in the status
# bar) and xvfb_images_removed.png (Delete took the selected photo off the list): look at them.
set -euo pipefail
XVFB_DISPLAY=98
source "$(dirname "$0")/xvfb_session.sh"
PHOTO=${PHOTO:-../shared/images/astronaut.png}
convert -size 640x480 gradient:skyblue-white "$TMP/no_face.png"  # a photo without a face
start_app "$PHOTO" "$TMP/no_face.png" "$PHOTO"
sleep 15  # the model loads, both photos are analysed
import -window root "$OUT/xvfb_images.png"
xdotool key --window "$WIN" alt+d  # Device ▸ Average each face with its mirror image
sleep 1
import -window root "$OUT/xvfb_images_device_menu.png"
xdotool key --window "$WIN" a
sleep 6  # both photos analysed again, each face averaged with its mirror image
import -window root "$OUT/xvfb_images_mirror.png"
xdotool key --window "$WIN" Delete
sleep 1
import -window root "$OUT/xvfb_images_removed.png"
echo "wrote $OUT/xvfb_images.png, xvfb_images_device_menu.png, xvfb_images_mirror.png, xvfb_images_removed.png"
