#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) libraries that the PyQt5 wheels (PyQt5-Qt5 5.15) need to
# run with QT_QPA_PLATFORM=offscreen: the plotting tests (observers, visualizers) and the GUI
# tests render their windows that way, without a display.
#
# The set was found by trying on a minimal Debian 12 (debootstrap --variant=minbase) with
# python3, `pip install PyQt5 pyqtgraph` and an offscreen pyqtgraph window saved as PNG:
#   libgl1          libGL.so.1 (imported by QtGui; pulls in the X11/xcb client libraries)
#   libglib2.0-0    libgthread-2.0.so.0 (QtCore)
#   libfontconfig1  libfontconfig.so.1, libfreetype.so.6 (the offscreen platform plugin;
#                   pulls in fonts-dejavu-core, so tick labels and titles have a font)
#
# With --xcb it also installs what the xcb platform plugin needs to open real windows on an
# X11 display (a desktop, or Xvfb): found the same way (ldd of libqxcb.so, then Xvfb).
#
# Usage: bash .ci/qt-deps.sh [--xcb]      (as root, or with sudo available)
set -euo pipefail

packages=(libgl1 libglib2.0-0 libfontconfig1)
if [[ "${1:-}" == "--xcb" ]]; then
    packages+=(
        libdbus-1-3 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
        libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libxcb-xkb1
    )
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--xcb]" >&2
    exit 2
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "qt-deps: all present (${packages[*]})"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "qt-deps: run as root (or install sudo)" >&2; exit 1; }
    SUDO=(sudo)
fi
echo "qt-deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
