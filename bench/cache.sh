#!/usr/bin/env bash
# Measures the persistent cache (the journaled cache issue's benchmark):
#
#   warm read   a SIZE file read through a fresh mount whose cache holds it,
#               kernel page cache dropped, vs the same file read directly
#               from local disk; with zstd + AES-GCM on and with them off
#   cold read   the file through a 10 ms / 200 MB/s remote, with the cache
#               filling in the background vs without a cache
#   space       a compressible source tree (/usr/include) read through the
#               mount: cache bytes stored vs the tree's size
#
# Usage (as root): bench/cache.sh | tee out.md     (SIZE=1G by default)
# Markdown on stdout, progress on stderr; exits 0 even when a target fails.
set -uo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETFS=${NETFS:-$REPO/build/app/netfs}
SIZE=${SIZE:-1G}
TREE=${TREE:-/usr/include}
WORKDIR=${WORKDIR:-/tmp/netfs-cache-bench}
SRC=$WORKDIR/src MNT=$WORKDIR/mnt KEY=$WORKDIR/key

say() { printf '[cache-bench %(%T)T] %s\n' -1 "$*" >&2; }
die() { say "$*"; exit 1; }

cleanup() {
    mountpoint -q "$MNT" 2>/dev/null && "$NETFS" unmount "$MNT" >/dev/null 2>&1
    rm -rf --one-file-system "$WORKDIR"
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || die "run as root (FUSE mounts, drop_caches)"
[[ -x $NETFS ]] || die "no netfs binary at $NETFS (run scripts/setup.sh)"
rm -rf "$WORKDIR" && mkdir -p "$SRC" "$MNT" || die "cannot create $WORKDIR"
(umask 077 && head -c 32 /dev/urandom >"$KEY")

say "making a $SIZE file of random data and copying $TREE"
head -c "$SIZE" /dev/urandom >"$SRC/big" || die "cannot write $SRC/big"
cp -a "$TREE" "$SRC/tree" 2>/dev/null
tree_bytes=$(du -sb "$SRC/tree" | cut -f1)

# dd's rate of a whole-file read in MB/s (10^6 bytes).
read_rate() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
    dd if="$1" of=/dev/null bs=1M 2>&1 | awk '/copied/ {
        for (i = 1; i <= NF; i++) if ($i == "s,") secs = $(i - 1); print $1 / secs / 1e6 }'
}

# mount_it URL ARGS...: mounts on MNT in the background, waits until it is up.
mount_it() {
    local url=$1
    shift
    "$NETFS" mount "$url" "$MNT" "$@" >/dev/null 2>"$WORKDIR/mount.err" || die "mount failed: $(cat "$WORKDIR/mount.err")"
}
unmount_it() { "$NETFS" unmount "$MNT" >/dev/null 2>&1 || die "unmount failed"; }

say "direct read from local disk"
direct=$(read_rate "$SRC/big")

declare -A warm
for mode in on off; do
    flags=(--key-file "$KEY")
    [[ $mode == off ]] && flags=(--no-encrypt --no-compress)
    cache=$WORKDIR/cache-$mode
    say "warm read, transforms $mode: filling the cache"
    mount_it "file://$SRC" --cache-dir "$cache" "${flags[@]}"
    read_rate "$MNT/big" >/dev/null
    unmount_it
    say "warm read, transforms $mode: reading from the cache"
    mount_it "file://$SRC" --cache-dir "$cache" "${flags[@]}"
    warm[$mode]=$(read_rate "$MNT/big")
    unmount_it
done

latency="file://$SRC?latency_ms=10&bandwidth_mbs=200"
say "cold read through 10 ms / 200 MB/s without a cache"
mount_it "$latency" --no-cache
cold_plain=$(read_rate "$MNT/big")
unmount_it
say "cold read through 10 ms / 200 MB/s with the cache filling"
mount_it "$latency" --cache-dir "$WORKDIR/cache-cold" --key-file "$KEY"
cold_cache=$(read_rate "$MNT/big")
unmount_it

say "space used for $TREE ($tree_bytes bytes)"
mount_it "file://$SRC" --cache-dir "$WORKDIR/cache-tree" --key-file "$KEY"
# Through a pipe: GNU tar skips reading file contents when writing to /dev/null.
tar -cf - -C "$MNT" tree | cat >/dev/null
unmount_it
stored=$("$NETFS" cache stats --cache-dir "$WORKDIR/cache-tree" --json | awk -F': *' '/"stored_bytes"/ {gsub(",", "", $2); print $2}')

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }
verdict() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { print (a >= t * b) ? "PASS" : "**FAIL**" }'; }

echo "# netfs cache benchmark"
echo
echo "- date: $(date -u)"
echo "- machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
echo "- commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null); SIZE=$SIZE; tree: $TREE"
echo
echo "| measurement | MB/s or bytes | vs |"
echo "|---|---:|---:|"
printf '| direct read from local disk, cold | %.1f | |\n' "$direct"
printf '| warm read from the cache, zstd + AES-GCM | %.1f | %s of direct |\n' "${warm[on]}" "$(pct "${warm[on]}" "$direct")"
printf '| warm read from the cache, transforms off | %.1f | %s of direct |\n' "${warm[off]}" "$(pct "${warm[off]}" "$direct")"
printf '| cold read, 10 ms / 200 MB/s, no cache | %.1f | |\n' "$cold_plain"
printf '| cold read, 10 ms / 200 MB/s, cache filling | %.1f | %s of no cache |\n' "$cold_cache" "$(pct "$cold_cache" "$cold_plain")"
printf '| %s: size / stored in the cache | %s / %s | %s |\n' "$TREE" "$tree_bytes" "$stored" "$(pct "$stored" "$tree_bytes")"
echo
echo "## Targets"
echo
echo "- $(verdict "${warm[off]}" "$direct" 0.8) warm read, transforms off >= 80% of direct"
echo "- $(verdict "${warm[on]}" "$direct" 0.5) warm read, zstd + AES-GCM >= 50% of direct"
echo "- $(verdict "$cold_cache" "$cold_plain" 0.9) cold read with the cache >= 90% of without"
if ((stored > 0)); then
    echo "- $(verdict "$tree_bytes" "$stored" 2) compressible text stored in at most half its size"
else
    echo "- **FAIL** compressible text: nothing was stored (not measured)"
fi
