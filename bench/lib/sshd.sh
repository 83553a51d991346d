# shellcheck shell=bash
# A private sshd for the benchmarks, on 127.0.0.1 with generated host and
# user keys, plus bench_delay_proxy in front of it for the latency runs
# (this kernel has no netem). Source it after setting WORKDIR and
# LATENCY_MS; it sets
#
#   PORT        the sshd's port (loopback runs)
#   PROXY_PORT  the relay's port: every byte delayed LATENCY_MS/2 each way
#   KEY KNOWN   the user key and a known_hosts file for both ports
#
# and provides start_sshd, stop_sshd (a server going away) and
# stop_bench_servers (for the caller's cleanup trap).

bench_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$WORKDIR/keys"
chmod 700 "$WORKDIR/keys"
KEY=$WORKDIR/keys/user
KNOWN=$WORKDIR/keys/known_hosts
[[ -f $KEY ]] || ssh-keygen -q -t ed25519 -N '' -f "$KEY"
[[ -f $WORKDIR/keys/host ]] || ssh-keygen -q -t ed25519 -N '' -f "$WORKDIR/keys/host"
mkdir -p /run/sshd
PORT=$(bench_free_port)
cat >"$WORKDIR/sshd_config" <<CONFIG
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORKDIR/keys/host
AuthorizedKeysFile $KEY.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $WORKDIR/sshd.pid
Subsystem sftp internal-sftp
CONFIG

start_sshd() {
    /usr/sbin/sshd -f "$WORKDIR/sshd_config" -E "$WORKDIR/sshd.log" || die "sshd did not start (see $WORKDIR/sshd.log)"
    for _ in $(seq 50); do [[ -s $WORKDIR/sshd.pid ]] && return 0; sleep 0.1; done
}
# The server goes away: the listener and every session it serves.
# The processes below `pid`: an sshd's sessions are its children's children.
bench_descendants() {
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        bench_descendants "$child"
    done
}

# This sshd and its sessions only: other sshds on the machine (a test
# suite's, a user's) and their sessions are left alone.
stop_sshd() {
    if [[ -f $WORKDIR/sshd.pid ]]; then
        local pid
        pid=$(cat "$WORKDIR/sshd.pid")
        # shellcheck disable=SC2046  # one pid per word
        kill "$pid" $(bench_descendants "$pid") 2>/dev/null
    fi
    pkill -f "sshd.*$WORKDIR/sshd_config" 2>/dev/null
    rm -f "$WORKDIR/sshd.pid"
}

start_sshd
PROXY_PORT=$(bench_free_port)
"$REPO/build/bench_delay_proxy" "$PROXY_PORT" "$PORT" $((LATENCY_MS / 2)) &
PROXY_PID=$!
: >"$KNOWN"
for p in "$PORT" "$PROXY_PORT"; do
    echo "[127.0.0.1]:$p $(cut -d' ' -f1,2 "$WORKDIR/keys/host.pub")" >>"$KNOWN"
done

stop_bench_servers() {
    kill "$PROXY_PID" 2>/dev/null
    stop_sshd
}
