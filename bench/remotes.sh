#!/usr/bin/env bash
# netfs over sftp:// side by side with the tools a user would pick instead,
# on the same server and data: sshfs, and rclone mount --vfs-cache-mode full.
#
# The script starts its own sshd on 127.0.0.1 (a generated host and user
# key), and measures each tool twice: on loopback, and through a relay that
# delays every byte by LATENCY_MS/2 each way (bench_delay_proxy: this kernel
# has no netem). Rows, as in the remotes issue:
#
#   cold read        a SIZE file, fresh mount, empty caches
#   second read      the same file after an unmount and a new mount (persistent caches kept)
#   random 4K        fio random 4 KiB reads of the SIZE file (IOPS)
#   write            a SIZE file written with fsync
#   small files      a tree of FILES files of 1-4 KiB copied in, until the server has them all
#   ls -lR           of that tree, fresh mount
#   read tree        every file of the tree read, fresh mount
#
# plus the wire's own limit, `ssh host cat FILE > /dev/null` (ssh's start-up
# time subtracted). MB is 10^6 bytes. Results: markdown on stdout; progress
# on stderr. Run as root after building (`cmake --build build --target
# bench_delay_proxy` is done for you):
#
#   bench/remotes.sh | tee /tmp/remotes.md
#   SIZE=256M FILES=1000 bench/remotes.sh      # quicker
#
# Knobs: SIZE (1G), FILES (5000), LATENCY_MS (20, round trip), TOOLS ("netfs
# sshfs rclone"), NETS ("loopback latency"), FIO_RUNTIME (10), WORKDIR.
# shellcheck disable=SC2317  # cleanup runs from a trap
set -uo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETFS=${NETFS:-$REPO/build/app/netfs}
SIZE=${SIZE:-1G}
FILES=${FILES:-5000}
LATENCY_MS=${LATENCY_MS:-20}
TOOLS=${TOOLS:-"netfs sshfs rclone"}
NETS=${NETS:-"loopback latency"}
FIO_RUNTIME=${FIO_RUNTIME:-10}
WORKDIR=${WORKDIR:-/tmp/netfs-remotes-bench}
NETFS_OPTIONS=${NETFS_OPTIONS:-}   # more -o options for netfs, e.g. connections=8

say() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }
to_bytes() {
    [[ $1 =~ ^([0-9]+)([KkMmGg]?)$ ]] || return 1
    local n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]^^} in K) n=$((n << 10)) ;; M) n=$((n << 20)) ;; G) n=$((n << 30)) ;; esac
    echo "$n"
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { echo "$EPOCHREALTIME"; }
since() { awk "BEGIN { printf \"%.3f\", $EPOCHREALTIME - $1 }"; }

[[ $(id -u) == 0 ]] || die "run as root (FUSE mounts, drop_caches, sshd)"
[[ -x $NETFS ]] || die "no netfs binary at $NETFS (build first)"
BYTES=$(to_bytes "$SIZE") || die "bad SIZE '$SIZE'"
MB=$((BYTES / 1000000))
cmake --build "$REPO/build" --target bench_delay_proxy >/dev/null || die "cannot build bench_delay_proxy"

# ---------------------------------------------------------------- the server

rm -rf "$WORKDIR"
mkdir -p "$WORKDIR"/{export,mnt,local}
# shellcheck source=bench/lib/sshd.sh
source "$REPO/bench/lib/sshd.sh"

cleanup() {
    for m in "$WORKDIR"/mnt; do
        mountpoint -q "$m" && { "$NETFS" unmount "$m" 2>/dev/null || fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
    done
    stop_bench_servers
    pkill -f "rclone mount .*$WORKDIR" 2>/dev/null
}
trap cleanup EXIT

say "data: a $SIZE file and $FILES small files"
head -c "$BYTES" /dev/urandom >"$WORKDIR/export/big"
mkdir -p "$WORKDIR/local/tree"
for ((i = 0; i < FILES; i++)); do
    d=$WORKDIR/local/tree/d$((i / 100))
    [[ -d $d ]] || mkdir "$d"
    head -c $((1024 + (i * 7919) % 3072)) /dev/urandom >"$d/f$i"
done
TREE_BYTES=$(du -sb --apparent-size "$WORKDIR/local/tree" | cut -f1)
cp -r "$WORKDIR/local/tree" "$WORKDIR/export/tree"

# ---------------------------------------------------------------- the tools

MNT=$WORKDIR/mnt
mount_tool() {  # tool port
    local tool=$1 port=$2
    case $tool in
    netfs)
        "$NETFS" mount "sftp://root@127.0.0.1:$port$WORKDIR/export" "$MNT" \
            -o "identity=$KEY,known_hosts=$KNOWN${NETFS_OPTIONS:+,$NETFS_OPTIONS}" --cache-dir "$WORKDIR/cache-netfs" --key-file "$WORKDIR/keys/cachekey" ;;
    sshfs)
        sshfs -p "$port" -o "IdentityFile=$KEY,UserKnownHostsFile=$KNOWN,StrictHostKeyChecking=yes" \
            "root@127.0.0.1:$WORKDIR/export" "$MNT" ;;
    rclone)
        rclone mount ":sftp,host=127.0.0.1,port=$port,user=root,key_file=$KEY,known_hosts_file=$KNOWN,disable_hashcheck=true:$WORKDIR/export" \
            "$MNT" --vfs-cache-mode full --cache-dir "$WORKDIR/cache-rclone" --daemon --daemon-timeout 30s \
            --log-file "$WORKDIR/rclone.log" ;;
    esac
    for _ in $(seq 100); do mountpoint -q "$MNT" && return 0; sleep 0.1; done
    die "$tool did not mount"
}
unmount_tool() {
    case $1 in
    netfs) "$NETFS" unmount "$MNT" ;;
    *) fusermount3 -u "$MNT" || umount -l "$MNT" ;;
    esac
    for _ in $(seq 300); do mountpoint -q "$MNT" || break; sleep 0.1; done
    [[ $1 == rclone ]] && for _ in $(seq 100); do pgrep -f "rclone mount .*$WORKDIR" >/dev/null || break; sleep 0.1; done
}
clear_caches() { rm -rf "$WORKDIR/cache-netfs" "$WORKDIR/cache-rclone"; }
printf 'a cache key for the benchmark' >"$WORKDIR/keys/cachekey"
chmod 600 "$WORKDIR/keys/cachekey"

# Until the server holds every file of the local tree with all its bytes:
# writes that are only queued (rclone uploads in the background) do not count.
wait_uploaded() {  # dir on the server
    for _ in $(seq 6000); do
        [[ $(du -sb --apparent-size "$1" 2>/dev/null | cut -f1) -ge $TREE_BYTES ]] &&
            [[ $(find "$1" -type f | wc -l) -ge $FILES ]] && return 0
        sleep 0.1
    done
    return 1
}

declare -A R  # R[tool,net,row]

measure() {  # tool net port
    local tool=$1 net=$2 port=$3 t
    say "$tool over $net: cold read"
    clear_caches; drop_caches
    mount_tool "$tool" "$port"
    t=$(now); dd if="$MNT/big" of=/dev/null bs=1M 2>/dev/null; R[$tool,$net,cold]=$(calc "$MB / $(since "$t")")
    unmount_tool "$tool"
    say "$tool over $net: second read after remount"
    drop_caches
    mount_tool "$tool" "$port"
    t=$(now); dd if="$MNT/big" of=/dev/null bs=1M 2>/dev/null; R[$tool,$net,second]=$(calc "$MB / $(since "$t")")
    say "$tool over $net: random 4K reads"
    R[$tool,$net,rand]=$(fio --name=r --filename="$MNT/big" --rw=randread --bs=4k --direct=0 --ioengine=psync \
        --time_based --runtime="$FIO_RUNTIME" --invalidate=1 --output-format=terse 2>/dev/null | cut -d';' -f8)
    unmount_tool "$tool"
    say "$tool over $net: write"
    clear_caches; drop_caches
    mount_tool "$tool" "$port"
    t=$(now)
    dd if=/dev/urandom of="$MNT/written" bs=1M count=$((BYTES >> 20)) conv=fsync 2>/dev/null
    R[$tool,$net,write]=$(calc "$MB / $(since "$t")")
    rm -f "$MNT/written"
    say "$tool over $net: small files"
    t=$(now)
    cp -r "$WORKDIR/local/tree" "$MNT/tree-$tool"
    sync -f "$MNT" 2>/dev/null
    wait_uploaded "$WORKDIR/export/tree-$tool" || say "WARNING: $tool did not upload the tree"
    R[$tool,$net,files]=$(since "$t")
    unmount_tool "$tool"
    rm -rf "$WORKDIR/export/tree-$tool"
    say "$tool over $net: ls -lR and read tree"
    clear_caches; drop_caches
    mount_tool "$tool" "$port"
    t=$(now); ls -lR "$MNT/tree" >/dev/null; R[$tool,$net,ls]=$(since "$t")
    t=$(now); find "$MNT/tree" -type f -exec cat {} + >/dev/null; R[$tool,$net,readtree]=$(since "$t")
    unmount_tool "$tool"
}

for net in $NETS; do
    port=$PORT
    [[ $net == latency ]] && port=$PROXY_PORT
    say "raw wire over $net: ssh cat"
    ssh_cmd=(ssh -p "$port" -i "$KEY" -o "UserKnownHostsFile=$KNOWN" -o StrictHostKeyChecking=yes -o BatchMode=yes root@127.0.0.1)
    t=$(now); "${ssh_cmd[@]}" true; start_cost=$(since "$t")
    drop_caches
    t=$(now); "${ssh_cmd[@]}" cat "$WORKDIR/export/big" >/dev/null
    R[wire,$net,cold]=$(calc "$MB / ($(since "$t") - $start_cost)")
    for tool in $TOOLS; do measure "$tool" "$net" "$port"; done
done

# ---------------------------------------------------------------- report

printf '# netfs sftp:// against sshfs and rclone\n\n'
printf '%s, %s, %s cores, kernel %s. SIZE=%s FILES=%s, round trip of the latency runs %s ms (bench_delay_proxy).\n\n' \
    "$(date -u +%F)" "$(uname -m)" "$(nproc)" "$(uname -r)" "$SIZE" "$FILES" "$LATENCY_MS"
printf '`ssh cat` of the file (the wire limit):'
for net in $NETS; do printf ' %s %s MB/s;' "$net" "${R[wire,$net,cold]}"; done
printf '\n\n| row | unit |'
for net in $NETS; do for tool in $TOOLS; do printf ' %s %s |' "$tool" "$net"; done; done
printf '\n|---|---|'
for net in $NETS; do for tool in $TOOLS; do printf -- '---|'; done; done
printf '\n'
row() {  # key label unit
    printf '| %s | %s |' "$2" "$3"
    for net in $NETS; do for tool in $TOOLS; do printf ' %s |' "${R[$tool,$net,$1]:--}"; done; done
    printf '\n'
}
row cold "cold sequential read of $SIZE" "MB/s"
row second "second read after remount" "MB/s"
row rand "random 4 KiB reads" "IOPS"
row write "sequential write of $SIZE (fsync)" "MB/s"
row files "write $FILES small files (until on the server)" "s"
row ls "ls -lR of them" "s"
row readtree "read all of them" "s"
