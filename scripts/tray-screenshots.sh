#!/usr/bin/env bash
# Screenshots of netfs-tray for a person to look at: runs it under Xvfb with
# a window manager (openbox) and a tray host (trayer), against a
# file:// mount that has a conflict and a pinned folder, and saves
#   OUTDIR/menu.png       the tray menu, opened under the icon
#   OUTDIR/conflicts.png  the Conflicts window
#   OUTDIR/offline.png    the Available offline window
# Usage: scripts/tray-screenshots.sh OUTDIR [BUILD_DIR]   (BUILD_DIR: build)
# Needs root (FUSE) and scripts/setup.sh's packages (xvfb openbox trayer imagemagick libqt6svg6).
set -euo pipefail
out=${1:?usage: tray-screenshots.sh OUTDIR [BUILD_DIR]}
build=${2:-build}
netfs=$(realpath "$build/app/netfs")
tray=$(realpath "$build/ui/netfs-tray")
mkdir -p "$out"
out=$(realpath "$out")

work=$(mktemp -d)
# A runtime dir of its own: --show opens the first mount the tray finds,
# which must be this one, not another of the user's (or a test's) mounts.
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state XDG_RUNTIME_DIR=$work/run
mp=$work/mnt
mkdir -p "$work/server/docs" "$mp"
mkdir -m 700 "$XDG_RUNTIME_DIR"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$netfs" unmount "$mp" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A mount with one conflict and one pinned folder.
echo "the original" > "$work/server/report.txt"
head -c 3000000 /dev/urandom > "$work/server/docs/data.bin"
echo "notes" > "$work/server/docs/notes.txt"
"$netfs" mount "file://$work/server" "$mp" --cache-dir "$work/cache" --cache-size 1G
cat "$mp/report.txt" >/dev/null
"$netfs" offline "$mp"
echo "my edit, made offline" > "$mp/report.txt"
sleep 1.1
echo "an edit made on the server meanwhile" > "$work/server/report.txt"
"$netfs" online "$mp"
"$netfs" sync "$mp" >/dev/null || true
"$netfs" pin "$mp/docs" --wait >/dev/null

display=:$((90 + RANDOM % 100))
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY=$display QT_QPA_PLATFORM=xcb
for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
openbox >/dev/null 2>&1 &
pids+=($!)
trayer --edge top --align right --widthtype pixel --width 120 --height 32 --SetDockType true >/dev/null 2>&1 &
pids+=($!)
sleep 1

# (--show menu opens the menu where the icon would: a click through xdotool
# on a trayer icon does not reach Qt reliably.)
for window in menu conflicts offline; do
  "$tray" --show "$window" >/dev/null 2>&1 &
  pids+=($!)
  sleep 3
  import -window root "$out/$window.png"
  kill "${pids[-1]}"; unset 'pids[-1]'
done
echo "screenshots in $out: menu.png conflicts.png offline.png"
