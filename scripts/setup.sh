#!/bin/sh
# Installs the Debian 12 packages wan.c needs to build, test and fuzz. Idempotent: packages already
# present are left alone, and nothing is fetched when all are there. Run as root (or through sudo).
set -eu

PKGS="make gcc pkg-config libc6-dev libopenblas-dev libcjson-dev \
libavcodec-dev libavformat-dev libswscale-dev libavutil-dev libmicrohttpd-dev \
clang libclang-rt-14-dev ffmpeg python3 \
zlib1g-dev python3-venv chromium chromium-driver"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    echo "setup: all packages present"
    exit 0
fi
echo "setup: installing$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
