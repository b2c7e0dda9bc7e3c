#!/usr/bin/env bash
# Debian packages the build needs that a fresh machine may lack. Installs only
# what is missing (apt-get needs root); prints the command otherwise.
set -euo pipefail

# cmake + g++: colcon builds the message typesupport libraries.
# EGL + Mesa (llvmpipe): Panda3D renders the scene generator's cameras offscreen.
packages=(cmake g++ libegl1 libegl-mesa0 libgl1-mesa-dri)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "== installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
