#!/usr/bin/env bash
# Disconnected operation over sftp://, on loopback and at LATENCY_MS round
# trip (bench_delay_proxy), against the targets of the disconnected
# operation issue:
#
#   noticed         server killed -> the mount reports `disconnected` (s)
#   back            server restarted -> `connected` again (s)
#   offline files   FILES small files (1-4 KiB) copied into the mount while
#                   disconnected, against the same copy to a directory on
#                   the cache's own filesystem (s, and the ratio), plain
#                   (each ending with its data on disk) and with an fsync
#                   per file, and through a passthrough FUSE mount (bindfs:
#                   what FUSE itself costs)
#   offline write   a WRITE_SIZE file of random bytes written with fsync
#                   while disconnected,
#                   against the same on the cache's filesystem (MB/s, ratio)
#   reintegrate     `netfs sync` of those FILES files (s, files/s)
#   reintegrate big `netfs sync` of WRITE_SIZE changed data (s, MB/s)
#
# Run as root after building: bench/offline.sh | tee /tmp/offline.md
# Knobs: FILES (10000), WRITE_SIZE (1G), LATENCY_MS (20), NETS ("loopback
# latency"), NETFS_OPTIONS (more -o options), WORKDIR. MB is 10^6 bytes. Markdown on stdout, progress on stderr.
# shellcheck disable=SC2317  # cleanup runs from a trap
set -uo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETFS=${NETFS:-$REPO/build/app/netfs}
FILES=${FILES:-10000}
WRITE_SIZE=${WRITE_SIZE:-1G}
LATENCY_MS=${LATENCY_MS:-20}
NETS=${NETS:-"loopback latency"}
WORKDIR=${WORKDIR:-/var/tmp/netfs-offline-bench}
NETFS_OPTIONS=${NETFS_OPTIONS:-}   # more -o options for netfs, e.g. connections=16

say() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
to_bytes() {
    [[ $1 =~ ^([0-9]+)([KkMmGg]?)$ ]] || return 1
    local n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]^^} in K) n=$((n << 10)) ;; M) n=$((n << 20)) ;; G) n=$((n << 30)) ;; esac
    echo "$n"
}
now() { echo "$EPOCHREALTIME"; }
since() { awk "BEGIN { printf \"%.3f\", $EPOCHREALTIME - $1 }"; }
mode_of() { "$NETFS" status "$MNT" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["mode"])' 2>/dev/null; }
wait_mode() {  # mode timeout_s -> seconds waited, or "timeout"
    local t; t=$(now)
    while [[ $(mode_of) != "$1" ]]; do
        awk "BEGIN { exit !($EPOCHREALTIME - $t > $2) }" && { echo timeout; return 1; }
        sleep 0.05
    done
    since "$t"
}

[[ $(id -u) == 0 ]] || die "run as root (FUSE mounts, sshd)"
[[ -x $NETFS ]] || die "no netfs binary at $NETFS (build first)"
WRITE_BYTES=$(to_bytes "$WRITE_SIZE") || die "bad WRITE_SIZE '$WRITE_SIZE'"
WRITE_MB=$((WRITE_BYTES / 1000000))
cmake --build "$REPO/build" --target bench_delay_proxy >/dev/null || die "cannot build bench_delay_proxy"

rm -rf "$WORKDIR"
mkdir -p "$WORKDIR"/{export,mnt,local,cachefs}
# shellcheck source=bench/lib/sshd.sh
source "$REPO/bench/lib/sshd.sh"
MNT=$WORKDIR/mnt
cleanup() {
    mountpoint -q "$WORKDIR/passthrough" && fusermount -u "$WORKDIR/passthrough"
    mountpoint -q "$MNT" && { "$NETFS" unmount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
    stop_bench_servers
}
trap cleanup EXIT
printf 'a cache key for the benchmark' >"$WORKDIR/keys/cachekey"
chmod 600 "$WORKDIR/keys/cachekey"

say "data: $FILES small files"
for ((i = 0; i < FILES; i++)); do
    d=$WORKDIR/local/tree/d$((i / 100))
    [[ -d $d ]] || mkdir -p "$d"
    head -c $((1024 + (i * 7919) % 3072)) /dev/urandom >"$d/f$i"
done
head -c 4096 /dev/urandom >"$WORKDIR/export/seen"

mount_netfs() {  # port
    "$NETFS" mount "sftp://root@127.0.0.1:$1$WORKDIR/export" "$MNT" \
        -o "identity=$KEY,known_hosts=$KNOWN${NETFS_OPTIONS:+,$NETFS_OPTIONS}" --cache-dir "$WORKDIR/cache" --key-file "$WORKDIR/keys/cachekey" ||
        die "netfs did not mount"
}

declare -A R
for net in $NETS; do
    port=$PORT
    [[ $net == latency ]] && port=$PROXY_PORT
    rm -rf "$WORKDIR/cache" "$WORKDIR/export/tree" "$WORKDIR/export/big"
    mount_netfs "$port"
    cat "$MNT/seen" >/dev/null
    ls "$MNT" >/dev/null

    say "$net: server killed"
    stop_sshd
    R[$net,noticed]=$(wait_mode disconnected 30)
    say "$net: server back"
    start_sshd
    R[$net,back]=$(wait_mode connected 60)

    "$NETFS" offline "$MNT" >/dev/null
    say "$net: $FILES small files offline"
    # Both copies end with their data on disk: netfs's in its cache (on the
    # cache's filesystem, which `sync -f` there flushes; the FUSE mount has
    # no syncfs), the local one in place. Each starts with nothing of the
    # other's left to flush.
    sync -f "$WORKDIR/cachefs"
    t=$(now); cp -r "$WORKDIR/local/tree" "$MNT/tree"; sync -f "$WORKDIR/cachefs"; R[$net,files]=$(since "$t")
    rm -rf "$WORKDIR/cachefs/tree"
    sync -f "$WORKDIR/cachefs"
    t=$(now); cp -r "$WORKDIR/local/tree" "$WORKDIR/cachefs/tree"; sync -f "$WORKDIR/cachefs"; R[$net,files_local]=$(since "$t")
    # Each file durable once written (what netfs guaranteed offline before
    # 2026-12-01; now it is at fsync or within ~1.5 s): an fsync per file and directory.
    rm -rf "$WORKDIR/cachefs/tree2"
    sync -f "$WORKDIR/cachefs"
    t=$(now)
    python3 - "$WORKDIR/local/tree" "$WORKDIR/cachefs/tree2" <<'PY'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
for root, dirs, files in os.walk(src):
    out = os.path.join(dst, os.path.relpath(root, src))
    os.makedirs(out, exist_ok=True)
    for name in files:
        with open(os.path.join(root, name), 'rb') as f, open(os.path.join(out, name), 'wb') as g:
            g.write(f.read())
            os.fsync(g.fileno())
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
PY
    R[$net,files_local_fsync]=$(since "$t")
    # FUSE's own cost: the same copy through a passthrough FUSE mount
    # (bindfs, multithreaded) onto the cache's filesystem.
    rm -rf "$WORKDIR/cachefs/tree3"
    mkdir -p "$WORKDIR/cachefs/tree3" "$WORKDIR/passthrough"
    bindfs -o multithreaded "$WORKDIR/cachefs/tree3" "$WORKDIR/passthrough" || die "bindfs did not mount"
    sync -f "$WORKDIR/cachefs"
    t=$(now); cp -r "$WORKDIR/local/tree" "$WORKDIR/passthrough/tree"; sync -f "$WORKDIR/cachefs"; R[$net,files_fuse]=$(since "$t")
    fusermount -u "$WORKDIR/passthrough"
    say "$net: reintegrating $FILES files"
    "$NETFS" online "$MNT" >/dev/null
    t=$(now); "$NETFS" sync "$MNT" --timeout 3600 >&2; R[$net,reint]=$(since "$t")
    [[ $(find "$WORKDIR/export/tree" -type f | wc -l) == "$FILES" ]] || say "WARNING: the server has $(find "$WORKDIR/export/tree" -type f | wc -l) files, not $FILES"

    "$NETFS" offline "$MNT" >/dev/null
    say "$net: $WRITE_SIZE written offline"
    # Incompressible bytes (zeros would compress to nothing in the cache),
    # read from the page cache by both.
    [[ -f $WORKDIR/random.bin && $(stat -c %s "$WORKDIR/random.bin") == "$WRITE_BYTES" ]] ||
        head -c "$WRITE_BYTES" /dev/urandom >"$WORKDIR/random.bin"
    cat "$WORKDIR/random.bin" >/dev/null
    sync -f "$WORKDIR/cachefs"
    t=$(now); dd if="$WORKDIR/random.bin" of="$MNT/big" bs=1M conv=fsync 2>/dev/null; R[$net,write]=$(calc "$WRITE_MB / $(since "$t")")
    sync -f "$WORKDIR/cachefs"
    t=$(now); dd if="$WORKDIR/random.bin" of="$WORKDIR/cachefs/big" bs=1M conv=fsync 2>/dev/null; R[$net,write_local]=$(calc "$WRITE_MB / $(since "$t")")
    rm -f "$WORKDIR/cachefs/big"
    say "$net: reintegrating $WRITE_SIZE"
    "$NETFS" online "$MNT" >/dev/null
    t=$(now); "$NETFS" sync "$MNT" --timeout 3600 >&2; R[$net,reint_big]=$(since "$t")
    [[ $(stat -c %s "$WORKDIR/export/big") == "$WRITE_BYTES" ]] || say "WARNING: the server's big file has the wrong size"
    "$NETFS" unmount "$MNT"
done

printf '# Disconnected operation (sftp://)\n\n'
printf '%s, %s, %s cores, kernel %s. FILES=%s WRITE_SIZE=%s NETFS_OPTIONS=%s, latency runs at %s ms round trip (bench_delay_proxy). Cache and local comparison on %s.\n\n' \
    "$(date -u +%F)" "$(uname -m)" "$(nproc)" "$(uname -r)" "$FILES" "$WRITE_SIZE" "${NETFS_OPTIONS:-none}" "$LATENCY_MS" "$(df --output=fstype "$WORKDIR" | tail -1)"
printf '| row | unit |'
for net in $NETS; do printf ' %s |' "$net"; done
printf ' target |\n|---|---|'
for net in $NETS; do printf -- '---|'; done
printf -- '---|\n'
row() {  # label unit target values...
    local label=$1 unit=$2 target=$3; shift 3
    printf '| %s | %s |' "$label" "$unit"
    for v in "$@"; do printf ' %s |' "$v"; done
    printf ' %s |\n' "$target"
}
vals() { for net in $NETS; do printf '%s\n' "$1"; done; }
cols() { local key=$1; for net in $NETS; do printf '%s ' "${R[$net,$key]:--}"; done; }
ratio() { local a=$1 b=$2; for net in $NETS; do printf '%s ' "$(calc "${R[$net,$a]} / ${R[$net,$b]}")"; done; }
# shellcheck disable=SC2046
{
row "server killed -> disconnected" s "< 5" $(cols noticed)
row "server back -> connected" s "-" $(cols back)
row "$FILES small files copied in, offline" s "-" $(cols files)
row "the same copy on the cache's filesystem" s "-" $(cols files_local)
row "the same with an fsync per file" s "-" $(cols files_local_fsync)
row "offline / local (small files)" x "<= 2" $(ratio files files_local)
row "offline / local with fsync per file" x "-" $(ratio files files_local_fsync)
row "the same copy through a passthrough FUSE mount (bindfs)" s "-" $(cols files_fuse)
row "offline / passthrough FUSE" x "-" $(ratio files files_fuse)
row "$WRITE_SIZE written offline (fsync)" MB/s "-" $(cols write)
row "the same on the cache's filesystem" MB/s "-" $(cols write_local)
row "local / offline (write)" x "<= 2" $(ratio write_local write)
row "reintegrate $FILES small files" s "< 60 at 20 ms" $(cols reint)
row "reintegrate $WRITE_SIZE" s "-" $(cols reint_big)
}
