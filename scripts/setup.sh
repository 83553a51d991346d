#!/usr/bin/env bash
# Installs every Debian 12 package netfs needs (build, tests, benchmarks) and
# builds it into build/. Quick when everything is already installed.
# Usage: ./scripts/setup.sh            (as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build
  cmake ninja-build ccache g++ pkg-config
  qt6-base-dev qtkeychain-qt6-dev libfuse3-dev fuse3
  libsqlite3-dev libzstd-dev libssl-dev libssh2-1-dev libnfs-dev
  # tests and benchmarks
  attr fio psmisc procps util-linux iproute2
  # real servers the tests start (sshd, nfs-ganesha) and the tools netfs is measured against
  openssh-server openssh-client nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils
  sshfs rclone iptables bindfs
  # a desktop keyring for the tests of the default cache secret
  dbus gnome-keyring libsecret-tools
  # the tray's SVG icons, and scripts/tray-screenshots.sh (X server, window manager, tray host, capture)
  libqt6svg6 xvfb openbox trayer imagemagick
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

werror=OFF
[ -n "${CI:-}" ] && werror=ON
cmake -S . -B build -G Ninja -DNETFS_WERROR="$werror" >/dev/null
cmake --build build
