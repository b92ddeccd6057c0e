"""Linux: the X11 libraries Qt's xcb platform plugin needs, checked before Qt starts.

Without them Qt prints "Could not load the Qt platform plugin xcb" and blames only
libxcb-cursor0, while a plain Debian also lacks libxcb-icccm4 and libxcb-keysyms1. This names
every missing one and the apt line that installs them.
"""

import ctypes.util
import os
import sys

# library (as ctypes finds it) -> Debian/Ubuntu package
XCB_LIBRARIES = {
    "xcb-cursor": "libxcb-cursor0", "xcb-icccm": "libxcb-icccm4", "xcb-keysyms": "libxcb-keysyms1",
    "xcb-image": "libxcb-image0", "xcb-randr": "libxcb-randr0", "xcb-render-util": "libxcb-render-util0",
    "xcb-shape": "libxcb-shape0", "xcb-xkb": "libxcb-xkb1", "xkbcommon-x11": "libxkbcommon-x11-0",
}


def missing_xcb_packages() -> list[str]:
    """The packages of the xcb libraries that are not installed (empty off Linux, or when Qt
    will not use xcb: offscreen, Wayland, or no display)."""
    if not sys.platform.startswith("linux"):
        return []
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return []
    if not platform and (os.environ.get("WAYLAND_DISPLAY") or not os.environ.get("DISPLAY")):
        return []
    found = ctypes.util.find_library
    return [package for library, package in XCB_LIBRARIES.items() if found(library) is None]


def xcb_advice() -> str | None:
    """What to print when libraries are missing, or None."""
    missing = missing_xcb_packages()
    if not missing:
        return None
    return ("gsmc-desktop: Qt needs X11 libraries that are not installed: "
            f"{', '.join(missing)}. Install them with:\n  sudo apt install {' '.join(missing)}")
