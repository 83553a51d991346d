#!/usr/bin/env bash
# Measures netfs against the local disk it serves, side by side:
#
#   direct   the backing directory itself (local disk, kernel page cache)
#   netfs    a netfs mount of file://BACKING, no simulated network
#   latency  a netfs mount of file://BACKING?latency_ms=10&bandwidth_mbs=200
#
# on the same data: a SIZE file read sequentially (cold, then hot), a SIZE
# file written with fsync, random 4 KiB reads with fio, a tree of small files
# created and listed, and the daemon's peak memory. Results go to stdout as
# markdown (a header, one table, PASS/FAIL per target); progress goes to
# stderr, so `bench/run.sh | tee out.md` keeps a clean report.
#
# "Cold" means: a fresh mount (the daemon's folio memory is empty) and
# `echo 3 > /proc/sys/vm/drop_caches` (the kernel's page cache of the mount
# and of the backing directory is empty), so cold data comes from the disk.
# MB is 10^6 bytes throughout, as in the bandwidth_mbs= cap.
#
# The script exits 0 when a target fails: it measures, it does not gate.
# See bench/README.md for the knobs (SIZE, FILES, FILES_LATENCY, WORKDIR,
# SKIP_LATENCY, ...).
# shellcheck disable=SC2317,SC2059  # cleanup runs from a trap; formats are ours
set -uo pipefail
export LC_ALL=C   # dd's messages and $EPOCHREALTIME's decimal point

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETFS=${NETFS:-$REPO/build/app/netfs}
SIZE=${SIZE:-1G}
FILES=${FILES:-5000}
FILES_LATENCY=${FILES_LATENCY:-1000}
WORKDIR=${WORKDIR:-/tmp/netfs-bench}
SKIP_LATENCY=${SKIP_LATENCY:-0}
FIO_RUNTIME=${FIO_RUNTIME:-10}
MEMORY=${MEMORY:-}              # folio budget (-o memory=); empty: the daemon's default
KEEP_WORKDIR=${KEEP_WORKDIR:-0}
# The engine's figures are measured without the persistent cache, which would
# turn a second run's "cold" read into a cache read. CACHE=1 mounts with a
# cache in WORKDIR that starts empty on each run.
CACHE=${CACHE:-0}

# The simulated network of the third column; the read target is derived from it.
LATENCY_MS=10
BANDWIDTH_MBS=200
DEFAULT_MEMORY=256M             # netfs's default folio budget (app/mount_options.h)

# ---------------------------------------------------------------- helpers

say()  { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }
# Measurements run in $(...) subshells, so warnings are counted in a file.
warn() {
    printf '[bench %(%T)T] WARNING: %s\n' -1 "$*" >&2
    [[ -d $LOGDIR ]] && echo "$*" >>"$LOGDIR/warnings"
}
warnings() { [[ -f $LOGDIR/warnings ]] && wc -l <"$LOGDIR/warnings" || echo 0; }
die()  { printf 'bench: %s\n' "$*" >&2; exit 1; }

# "64M", "1G", "4096" -> bytes (powers of 1024, as netfs's own options).
to_bytes() {
    [[ $1 =~ ^([0-9]+)([KkMmGgTt]?)$ ]] || return 1
    local n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]^^} in
        K) n=$((n << 10)) ;; M) n=$((n << 20)) ;; G) n=$((n << 30)) ;; T) n=$((n << 40)) ;;
    esac
    echo "$n"
}

# Floating point through awk: calc 'EXPR' -> number.
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
# True when awk says the comparison holds, e.g. holds "185.2 >= 160".
holds() { awk "BEGIN { exit !($1) }"; }

elapsed_since() { calc "$EPOCHREALTIME - $1"; }

DROP_WARNED=0
drop_caches() {
    sync
    if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        ((DROP_WARNED)) || warn "cannot write /proc/sys/vm/drop_caches (not root?): cold runs are not cold"
        DROP_WARNED=1
    fi
}

# ------------------------------------------------------- parameters, checks

SIZE_BYTES=$(to_bytes "$SIZE") || die "SIZE=$SIZE: expected a number with an optional K/M/G suffix"
((SIZE_BYTES >= (1 << 20) && SIZE_BYTES % (1 << 20) == 0)) || die "SIZE=$SIZE: must be a multiple of 1M"
[[ $FILES =~ ^[1-9][0-9]*$ ]] || die "FILES=$FILES: expected a positive number"
[[ $FILES_LATENCY =~ ^[1-9][0-9]*$ ]] || die "FILES_LATENCY=$FILES_LATENCY: expected a positive number"
[[ $FIO_RUNTIME =~ ^[1-9][0-9]*$ ]] || die "FIO_RUNTIME=$FIO_RUNTIME: expected seconds"
BUDGET_BYTES=$(to_bytes "${MEMORY:-$DEFAULT_MEMORY}") || die "MEMORY=$MEMORY: expected e.g. 256M"
BUDGET_MIB=$((BUDGET_BYTES >> 20))
[[ -x $NETFS ]] || die "no netfs binary at $NETFS (build it, or set NETFS=/path/to/netfs)"
HAVE_FIO=1
command -v fio >/dev/null || { HAVE_FIO=0; say "fio not found: random reads are skipped"; }
((EUID == 0)) || say "not root: drop_caches will fail and cold runs will not be cold"

WORKDIR=${WORKDIR%/}
[[ $WORKDIR == /* && $WORKDIR != / ]] || die "WORKDIR=$WORKDIR: expected an absolute path other than /"
BACKING=$WORKDIR/backing
MNT=$WORKDIR/mnt
LOGDIR=$WORKDIR/logs
MARKER=$WORKDIR/.netfs-bench   # says: BACKING and LOGDIR are ours to delete
OWN_WORKDIR=0
CREATED_WORKDIR=0              # WORKDIR itself is ours (new, or left by an earlier run)
[[ ! -d $WORKDIR || -e $MARKER ]] && CREATED_WORKDIR=1
mountpoint -q "$MNT" 2>/dev/null && die "$MNT is still mounted (an earlier run?): netfs unmount $MNT"

# Mutable state that cleanup() needs.
DAEMON_PID=
POLLER_PID=
RANDOM_SOURCE=

# ------------------------------------------------------------------ cleanup

unmount_if_mounted() {
    mountpoint -q "$MNT" 2>/dev/null || return 0
    timeout 300 "$NETFS" unmount "$MNT" >>"$LOGDIR/unmount.out" 2>&1 && return 0
    warn "netfs unmount $MNT failed or timed out; detaching it with fusermount3 -uz"
    fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
}

# Waits up to $2 seconds for our daemon to exit, then stops it.
reap_daemon() {
    local pid=$DAEMON_PID deadline=$((SECONDS + $1))
    [[ -n $pid ]] || return 0
    while kill -0 "$pid" 2>/dev/null && [[ $(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) != Z ]]; do
        if ((SECONDS >= deadline)); then
            warn "netfs daemon $pid did not exit; sending SIGTERM"
            kill -TERM "$pid" 2>/dev/null
            sleep 5
            kill -KILL "$pid" 2>/dev/null
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null
    DAEMON_PID=
}

stop_poller() {
    [[ -n $POLLER_PID ]] || return 0
    kill "$POLLER_PID" 2>/dev/null
    wait "$POLLER_PID" 2>/dev/null
    POLLER_PID=
}

CLEANED=0
cleanup() {
    ((CLEANED)) && return
    CLEANED=1
    trap '' INT TERM   # a second Ctrl-C must not leave a mount behind
    stop_poller
    unmount_if_mounted
    reap_daemon 30
    [[ -n $RANDOM_SOURCE ]] && rm -f "$RANDOM_SOURCE"
    ((OWN_WORKDIR)) || return
    if ((KEEP_WORKDIR)); then
        say "kept $WORKDIR (KEEP_WORKDIR=1)"
        return
    fi
    if mountpoint -q "$MNT" 2>/dev/null; then
        say "$MNT is still mounted; leaving $WORKDIR in place"
        return
    fi
    rm -rf --one-file-system "$BACKING" "$WORKDIR"/cache-*
    rm -f "$WORKDIR/cache.key"
    rmdir "$MNT" 2>/dev/null
    if (($(warnings))); then
        say "there were $(warnings) warnings; daemon logs kept in $LOGDIR"
    else
        rm -rf --one-file-system "$LOGDIR"
        rm -f "$MARKER"
        ((CREATED_WORKDIR)) && rmdir "$WORKDIR" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'say "interrupted; cleaning up"; exit 130' INT
trap 'say "terminated; cleaning up"; exit 143' TERM

# ------------------------------------------------------------ mount, memory

PEAK_FILE=

# Appends the daemon's VmHWM (KiB) to PEAK_FILE every half second, so the
# peak includes what happens between our own readings (unmount write-back).
start_poller() {
    local pid=$1 out=$2
    (
        while [[ -r /proc/$pid/status ]]; do
            while read -r key value _; do
                [[ $key == VmHWM: ]] && { echo "$value" >>"$out"; break; }
            done <"/proc/$pid/status" 2>/dev/null
            sleep 0.5
        done
    ) &
    POLLER_PID=$!
}

record_peak() {
    awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON_PID/status" 2>/dev/null >>"$PEAK_FILE"
}

# mount_netfs QUERY LABEL: mounts file://BACKING?QUERY on MNT, with the daemon
# in the foreground as our own child so that its PID is $! (setsid keeps a
# Ctrl-C of this script away from it: cleanup() unmounts it properly).
mount_netfs() {
    local url="file://$BACKING$1" label=$2
    local -a opts=()
    [[ -n $MEMORY ]] && opts=(-o "memory=$MEMORY")
    if [[ $CACHE == 1 ]]; then
        opts+=(--cache-dir "$WORKDIR/cache-$label" --key-file "$WORKDIR/cache.key")
    else
        opts+=(--no-cache)
    fi
    setsid "$NETFS" mount "$url" "$MNT" "${opts[@]}" --foreground --log-file "$LOGDIR/$label.log" \
        </dev/null >>"$LOGDIR/$label.out" 2>&1 &
    DAEMON_PID=$!
    local deadline=$((SECONDS + 30))
    until mountpoint -q "$MNT"; do
        if ! kill -0 "$DAEMON_PID" 2>/dev/null || ((SECONDS >= deadline)); then
            warn "netfs mount $url $MNT did not come up; its output:"
            tail -n 20 "$LOGDIR/$label.out" "$LOGDIR/$label.log" >&2 2>/dev/null
            kill -TERM "$DAEMON_PID" 2>/dev/null
            reap_daemon 10
            return 1
        fi
        sleep 0.1
    done
    start_poller "$DAEMON_PID" "$PEAK_FILE"
}

unmount_netfs() {
    record_peak
    unmount_if_mounted
    reap_daemon 60
    stop_poller
}

# Peak of all readings in PEAK_FILE, MiB.
peak_mib() {
    awk 'max < $1 { max = $1 } END { if (max) printf "%.1f", max / 1024 }' "$PEAK_FILE"
}

# ------------------------------------------------------------- measurements
# Each prints its result (a number) on stdout, or nothing on failure.

# dd's byte count, checked against what we expect; our own clock for time.
dd_bytes() { sed -n 's/^\([0-9][0-9]*\) bytes .*copied.*/\1/p' <<<"$1" | tail -n 1; }

seq_read() {
    local file=$1 t0 out seconds bytes
    t0=$EPOCHREALTIME
    out=$(dd if="$file" of=/dev/null bs=1M 2>&1) || { warn "dd read of $file failed: $out"; return 1; }
    seconds=$(elapsed_since "$t0")
    bytes=$(dd_bytes "$out")
    [[ $bytes == "$SIZE_BYTES" ]] || { warn "dd read $bytes bytes of $file, expected $SIZE_BYTES"; return 1; }
    calc "$bytes / 1e6 / $seconds"
}

# conv=fsync: the time includes getting the data to the backing directory.
seq_write() {
    local file=$1 t0 out seconds bytes
    rm -f "$file"
    t0=$EPOCHREALTIME
    out=$(dd if="$RANDOM_SOURCE" of="$file" bs=1M conv=fsync 2>&1) || { warn "dd write of $file failed: $out"; return 1; }
    seconds=$(elapsed_since "$t0")
    bytes=$(dd_bytes "$out")
    [[ $bytes == "$SIZE_BYTES" ]] || { warn "dd wrote $bytes bytes to $file, expected $SIZE_BYTES"; return 1; }
    calc "$bytes / 1e6 / $seconds"
}

# One job, queue depth 1 (psync): every read waits for the previous one.
random_read() {
    local file=$1 out
    ((HAVE_FIO)) || return 1
    out=$(fio --name=randread --filename="$file" --rw=randread --bs=4k --ioengine=psync \
              --runtime="$FIO_RUNTIME" --time_based --invalidate=1 --readonly --minimal 2>&1) \
        || { warn "fio on $file failed: $out"; return 1; }
    # Terse format v3: 5 = error, 8 = read IOPS.
    awk -F';' 'NF > 8 && $1 ~ /^[0-9]+$/ && $5 == 0 { iops = $8 } END { if (iops != "") print iops }' <<<"$out"
}

# FILES files of 1-4 KiB in directories of 100, then sync, so the files are
# on the disk (direct) or written through to the backing directory (netfs).
# Files are written by bash itself: one fork per file would dominate the
# direct column.
PAYLOAD=$(head -c 3072 /dev/urandom | base64 -w 0)   # 4096 characters
create_tree() {
    local dir=$1 count=$2 t0 i sub
    rm -rf "$dir"
    mkdir "$dir" || { warn "mkdir $dir failed"; return 1; }
    t0=$EPOCHREALTIME
    for ((i = 0; i < count; i++)); do
        if ((i % 100 == 0)); then
            sub=$dir/d$((i / 100))
            mkdir "$sub" || { warn "mkdir $sub failed"; return 1; }
        fi
        printf '%s' "${PAYLOAD:0:1024 + (i * 997) % 3073}" >"$sub/f$i" \
            || { warn "creating $sub/f$i failed"; return 1; }
    done
    sync
    elapsed_since "$t0"
}

list_tree() {
    local dir=$1 count=$2 t0 seconds listed
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2010  # ls -lR is what is measured; our names are plain
    listed=$(ls -lR "$dir" | grep -c '^-') || { warn "ls -lR $dir failed"; return 1; }
    seconds=$(elapsed_since "$t0")
    [[ $listed == "$count" ]] || { warn "ls -lR $dir listed $listed files, expected $count"; return 1; }
    echo "$seconds"
}

# -------------------------------------------------------------- the setups

declare -A R          # R[row,setup] = value
SETUPS=(direct netfs latency)

# run_setup SETUP: fills R[*,SETUP]. The netfs setups mount three times, so
# that each cold measurement starts from an empty daemon.
run_setup() {
    local setup=$1 query='' target=$MNT files=$FILES
    case $setup in
        direct) target=$BACKING ;;
        latency) query="?latency_ms=$LATENCY_MS&bandwidth_mbs=$BANDWIDTH_MBS"; files=$FILES_LATENCY ;;
    esac
    PEAK_FILE=$LOGDIR/$setup.peak
    : >"$PEAK_FILE"
    local tree=$target/tree-$setup written=$target/written-$setup
    begin() { [[ $setup == direct ]] || mount_netfs "$query" "$setup-$1"; }
    end() { [[ $setup == direct ]] || unmount_netfs; }

    say "$setup: sequential read of $SIZE, cold then hot"
    if begin read; then
        drop_caches
        R[seqcold,$setup]=$(seq_read "$target/big")
        R[seqhot,$setup]=$(seq_read "$target/big")
        end
    fi

    say "$setup: random 4 KiB reads (fio, ${FIO_RUNTIME} s), sequential write of $SIZE, $files small files"
    if begin write; then
        drop_caches
        R[randread,$setup]=$(random_read "$target/big")
        R[seqwrite,$setup]=$(seq_write "$written")
        R[tree,$setup]=$(create_tree "$tree" "$files")
        end
        # What reached the backing directory, after the daemon wrote back and exited.
        if [[ -n ${R[seqwrite,$setup]-} ]] && ! cmp -s "$RANDOM_SOURCE" "$BACKING/written-$setup"; then
            warn "$setup: $BACKING/written-$setup differs from what was written"
            R[seqwrite,$setup]=
        fi
        rm -f "$BACKING/written-$setup"
    fi

    say "$setup: ls -lR of the tree, cold then hot"
    if [[ -n ${R[tree,$setup]-} ]] && begin list; then
        drop_caches
        R[lscold,$setup]=$(list_tree "$tree" "$files")
        R[lshot,$setup]=$(list_tree "$tree" "$files")
        end
    fi
    rm -rf "$BACKING/tree-$setup"

    [[ $setup == direct ]] || R[peak,$setup]=$(peak_mib)
    say "$setup: done"
}

# ------------------------------------------------------------------- main

# Only ever delete what an earlier run of this script left behind.
if [[ -e $BACKING || -e $LOGDIR ]] && [[ ! -e $MARKER ]]; then
    die "$BACKING or $LOGDIR exists but was not made by bench/run.sh; choose another WORKDIR"
fi
rm -rf --one-file-system "$BACKING" "$LOGDIR"
mkdir -p "$WORKDIR" && touch "$MARKER" && OWN_WORKDIR=1
mkdir -p "$BACKING" "$MNT" "$LOGDIR" || die "cannot create $BACKING, $MNT, $LOGDIR"
if [[ $CACHE == 1 ]]; then
    rm -rf "$WORKDIR"/cache-*
    (umask 077 && head -c 32 /dev/urandom >"$WORKDIR/cache.key")
fi
[[ -z $(ls -A "$MNT") ]] || die "$MNT is not empty"

avail=$(df -B1 --output=avail "$BACKING" | tail -n 1)
((avail > 3 * SIZE_BYTES)) || warn "$BACKING has $((avail >> 20)) MiB free; about $((3 * SIZE_BYTES >> 20)) MiB are needed"
case $(stat -f -c %T "$BACKING") in
    tmpfs|fuse*) warn "$BACKING is on $(stat -f -c %T "$BACKING"), not a local disk: the direct column is not a disk" ;;
esac

# Incompressible data, kept in RAM so that reading it costs the writer nothing.
shm=/dev/shm
if [[ ! -d $shm ]] || (($(df -B1 --output=avail "$shm" | tail -n 1) < SIZE_BYTES + (256 << 20))); then
    shm=$WORKDIR
fi
RANDOM_SOURCE=$(mktemp "$shm/netfs-bench-random.XXXXXX") || die "mktemp in $shm failed"
random_bytes() {   # random_bytes SEED BYTES: AES-CTR keystream, far cheaper than /dev/urandom
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$1" </dev/zero 2>/dev/null | head -c "$2"
}
say "generating $SIZE of random data in $RANDOM_SOURCE and $BACKING/big"
random_bytes write "$SIZE_BYTES" >"$RANDOM_SOURCE"
random_bytes read "$SIZE_BYTES" >"$BACKING/big"
if (($(stat -c %s "$RANDOM_SOURCE") != SIZE_BYTES || $(stat -c %s "$BACKING/big") != SIZE_BYTES)); then
    say "openssl enc did not deliver; using /dev/urandom"
    head -c "$SIZE_BYTES" /dev/urandom >"$RANDOM_SOURCE"
    head -c "$SIZE_BYTES" /dev/urandom >"$BACKING/big"
fi
sync

for setup in "${SETUPS[@]}"; do
    if [[ $setup == latency && $SKIP_LATENCY == 1 ]]; then
        say "latency: skipped (SKIP_LATENCY=1)"
        continue
    fi
    run_setup "$setup"
done

# ------------------------------------------------------------------ report

# cell ROW SETUP FORMAT: the value formatted, or why there is none.
cell() {
    local v=${R[$1,$2]-}
    if [[ $2 == latency && $SKIP_LATENCY == 1 ]]; then echo "skipped"
    elif [[ $1 == peak && $2 == direct ]]; then echo "—"
    elif [[ $1 == randread && $HAVE_FIO == 0 ]]; then echo "no fio"
    elif [[ -z $v ]]; then echo "**error**"
    else printf "$3" "$v"
    fi
}

# netfs as a percentage of direct's speed: throughput ratio, or for the
# time rows direct's time over netfs's time (so 100% always means "as fast").
speed_ratio() {
    local kind=$2 d=${R[$1,direct]-} n=${R[$1,netfs]-}
    [[ -n $d && -n $n ]] || { echo "—"; return; }
    if [[ $kind == time ]]; then calc "100 * $d / $n"; else calc "100 * $n / $d"; fi | xargs printf '%.0f%%'
}

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_line=$(free -g | awk '/^Mem:/ {printf "total %s GiB, used %s, free %s, available %s", $2, $3, $4, $7}')
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$REPO" diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
files_note=$FILES
[[ $SKIP_LATENCY != 1 && $FILES_LATENCY != "$FILES" ]] && files_note="$FILES ($FILES_LATENCY with latency)"

echo "# netfs benchmark"
echo
echo "- date: $(date -u)"
echo "- machine: $(nproc) CPUs ($cpu_model), memory $mem_line (free -g), kernel $(uname -r)"
echo "- commit: $commit; $("$NETFS" --version 2>/dev/null | head -n 1)"
echo "- data: SIZE=$SIZE, FILES=$files_note, fio runtime ${FIO_RUNTIME} s, folio budget ${BUDGET_MIB} MiB, backing directory on $(stat -f -c %T "$BACKING") ($(df --output=source "$BACKING" | tail -n 1))"
echo "- cold = fresh mount + drop_caches; hot = read again on the same mount; MB = 10^6 bytes"
echo
echo "| measurement | direct | netfs | netfs ${LATENCY_MS} ms/${BANDWIDTH_MBS} MB/s | netfs vs direct |"
echo "|---|---:|---:|---:|---:|"
row() {   # row KEY TITLE FORMAT KIND(rate|time|none)
    local key=$1 fmt=$3 kind=$4 line="| $2 |" setup v
    for setup in "${SETUPS[@]}"; do
        v=$(cell "$key" "$setup" "$fmt")
        if [[ $setup == latency && ($key == tree || $key == ls*) && $FILES_LATENCY != "$FILES" && -n ${R[$key,latency]-} ]]; then
            v="$v ($FILES_LATENCY files)"
        fi
        line+=" $v |"
    done
    if [[ $kind == none ]]; then line+=" — |"; else line+=" $(speed_ratio "$key" "$kind") |"; fi
    echo "$line"
}
row seqcold  "sequential read $SIZE, cold (MB/s)"            '%.1f' rate
row seqhot   "sequential read $SIZE, hot (MB/s)"             '%.1f' rate
row seqwrite "sequential write $SIZE + fsync (MB/s)"         '%.1f' rate
row randread "random 4 KiB reads, fio psync QD1 (IOPS)"      '%.0f' rate
row tree     "create $FILES files of 1–4 KiB + sync (s)"     '%.3f' time
row lscold   "ls -lR of the tree, cold (s)"                  '%.3f' time
row lshot    "ls -lR of the tree, hot (s)"                   '%.3f' time
row peak     "daemon peak memory, VmHWM (MiB)"               '%.1f' none
echo
echo "\"netfs vs direct\": netfs's speed as a percentage of direct's (for times: direct's time / netfs's time)."

# ------------------------------------------------------------------ targets

PASSED=0 FAILED=0 SKIPPED=0
verdict() {   # verdict CONDITION(awk, empty when not measured) TEXT
    if [[ -z $1 ]]; then
        echo "- **FAIL** $2: not measured"; FAILED=$((FAILED + 1))
    elif holds "$1"; then
        echo "- PASS $2"; PASSED=$((PASSED + 1))
    else
        echo "- **FAIL** $2"; FAILED=$((FAILED + 1))
    fi
}
fmt() { [[ -n $1 ]] && printf "$2" "$1" || echo "?"; }
both() { [[ -n $1 && -n $2 ]] && echo "$3"; }

echo
echo "## Targets"
echo
read_target=$(calc "0.8 * $BANDWIDTH_MBS")
if [[ $SKIP_LATENCY == 1 ]]; then
    echo "- SKIP cold sequential read with ${LATENCY_MS} ms/${BANDWIDTH_MBS} MB/s >= 80% of the cap (SKIP_LATENCY=1)"
    SKIPPED=$((SKIPPED + 1))
else
    v=${R[seqcold,latency]-}
    verdict "$(both "$v" x "$v >= $read_target")" \
        "cold sequential read with ${LATENCY_MS} ms/${BANDWIDTH_MBS} MB/s: $(fmt "$v" %.1f) MB/s (target >= $(fmt "$read_target" %.0f) MB/s, 80% of the cap)"
fi
d=${R[seqhot,direct]-} n=${R[seqhot,netfs]-}
verdict "$(both "$d" "$n" "$n >= 0.7 * $d")" \
    "hot sequential re-read without latency: $(fmt "$n" %.1f) MB/s vs direct $(fmt "$d" %.1f) MB/s (target >= 70%)"
d=${R[seqwrite,direct]-} n=${R[seqwrite,netfs]-}
verdict "$(both "$d" "$n" "$n >= 0.6 * $d")" \
    "sequential write without latency: $(fmt "$n" %.1f) MB/s vs direct $(fmt "$d" %.1f) MB/s (target >= 60%)"
for setup in netfs latency; do
    [[ $setup == latency && $SKIP_LATENCY == 1 ]] && continue
    v=${R[peak,$setup]-}
    verdict "$(both "$v" x "$v <= $BUDGET_MIB + 64")" \
        "daemon peak memory ($setup): $(fmt "$v" %.1f) MiB (target <= $BUDGET_MIB + 64 = $((BUDGET_MIB + 64)) MiB)"
done
echo
if ((FAILED)); then
    echo "**$FAILED of $((PASSED + FAILED)) targets FAILED**"
    printf '\n\033[1;31m*** %d target(s) FAILED ***\033[0m\n' "$FAILED" >&2
else
    echo "All $PASSED targets passed."
fi
(($(warnings))) && say "$(warnings) warnings during the run (see above)"
exit 0
