#!/bin/bash
# A/B of two netfs binaries, run alternately so that the host's noise falls
# on both: NFSv4 `ls -lR` of 2,000 files on a fresh mount without a cache
# (its own nfs-ganesha on 127.0.0.1, ports 20690/20691), and a 256 MiB
# `dd conv=fsync` of random bytes to a file:// mount with the persistent
# cache, and a `cp -r` of 1,000 small files to it (until unmounted: all
# written back). As root. Build the older binary in a worktree with the same build
# type (RelWithDebInfo, the default of scripts/setup.sh), e.g.
#   git worktree add /tmp/old REV && cmake -S /tmp/old -B /tmp/oldbuild -G Ninja && ninja -C /tmp/oldbuild app/netfs
# Usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]
set -u
OLD=$1 NEW=$2 ROUNDS=${3:-3}
W=/tmp/ab; rm -rf $W; mkdir -p $W/exp $W/rec $W/mnt $W/srv $W/caches
for d in $(seq 1 20); do mkdir -p $W/exp/d$d; for f in $(seq 1 100); do echo x > $W/exp/d$d/f$f; done; done
head -c 256M /dev/urandom > /dev/shm/ab_src
cat > $W/g.conf <<CONF
NFS_CORE_PARAM { Bind_addr = 127.0.0.1; NFS_Port = 20690; MNT_Port = 20691; Enable_NLM = false; Enable_RQUOTA = false; Protocols = 3, 4; }
NFSv4 { RecoveryBackend = fs; RecoveryRoot = "$W/rec"; Graceless = true; Allow_Numeric_Owners = true; Only_Numeric_Owners = true; }
EXPORT { Export_Id = 1; Path = "$W/exp"; Pseudo = "$W/exp"; Access_Type = RW; Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4; Transports = TCP; Attr_Expiration_Time = 0; FSAL { Name = VFS; } }
CONF
ganesha.nfsd -F -L $W/g.log -f $W/g.conf -p $W/g.pid >/dev/null 2>&1 &
GPID=$!
sleep 4
URL="nfs://127.0.0.1$W/exp?nfsport=20690&version=4"
for r in $(seq 1 $ROUNDS); do
  for name in old new; do
    B=$OLD; [ $name = new ] && B=$NEW
    $B mount "$URL" $W/mnt -o nfs_version=4 --no-cache >/dev/null || { echo "mount failed"; continue; }
    s=$(date +%s.%N); ls -lR $W/mnt > /dev/null; e=$(date +%s.%N)
    $B unmount $W/mnt
    awk -v n=$name -v r=$r -v s=$s -v e=$e 'BEGIN { printf "%s round %d nfs4 ls -lR 2000 files: %.3f s\n", n, r, e - s }'
    rm -rf $W/caches/c; mkdir -p $W/caches/c; rm -f $W/srv/f
    $B mount file://$W/srv $W/mnt --cache-dir $W/caches/c >/dev/null
    out=$(dd if=/dev/shm/ab_src of=$W/mnt/f bs=1M conv=fsync 2>&1 | tail -1)
    $B unmount $W/mnt
    echo "$name round $r file:// cache write 256 MiB: $out"
    rm -rf $W/caches/c $W/srv/tree; mkdir -p $W/caches/c
    $B mount file://$W/srv $W/mnt --cache-dir $W/caches/c >/dev/null
    s=$(date +%s.%N); mkdir $W/mnt/tree; cp -r $W/exp/d1 $W/exp/d2 $W/exp/d3 $W/exp/d4 $W/exp/d5 $W/exp/d6 $W/exp/d7 $W/exp/d8 $W/exp/d9 $W/exp/d10 $W/mnt/tree
    $B unmount $W/mnt; e=$(date +%s.%N)
    awk -v n=$name -v r=$r -v s=$s -v e=$e 'BEGIN { printf "%s round %d file:// cache cp -r 1000 small files: %.3f s\n", n, r, e - s }'
  done
done
kill $GPID; wait $GPID 2>/dev/null
rm -rf $W /dev/shm/ab_src
