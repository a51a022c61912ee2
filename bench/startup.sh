#!/usr/bin/env bash
# Start-to-ready time of one sluice-broker over many partitions (issue 12), Sluice only.
#
# Builds the release broker, starts it once with `--default-partitions PARTITIONS` and has kcat
# auto-create one topic (replication factor 1) by asking for its metadata, writes RECORDS records
# of RECORD_BYTES spread over the partitions by key with kcat (0: every partition empty), stops
# it cleanly (SIGTERM), then times RESTARTS clean restarts: from spawning the
# process to `/readyz` answering 200. With STRACE=1 one more restart and clean stop run under
# `strace -f -c` and the syscall summary is printed.
#
#   PARTITIONS=1000 RECORDS=0 RECORD_BYTES=1024 RESTARTS=3 FSYNC=interval STRACE=0
#   SLUICE_BIN=target/release/sluice-broker (set it to skip the build) WORK=<temp dir>
#   REUSE=1: WORK already holds a data directory from an earlier run (another build's, to
#   compare two builds on the same log): skip creating and filling it
#   COLD=1: before each timed restart, evict the data directory's files from the page cache
#   (posix_fadvise DONTNEED, no root needed), so a start reads what it reads from the disk
#
# A 5 GiB log: PARTITIONS=16 RECORDS=5000000 (1 KiB records; every partition's data is then in
# its active segment, which is what a start used to scan whole).
#
# Prints one line per restart: `restart <i>: <seconds> s to ready`, then the load average.
set -euo pipefail

cd "$(dirname "$0")/.."
PARTITIONS="${PARTITIONS:-1000}"
RECORDS="${RECORDS:-0}"
RECORD_BYTES="${RECORD_BYTES:-1024}"
RESTARTS="${RESTARTS:-3}"
FSYNC="${FSYNC:-interval}"
STRACE="${STRACE:-0}"
if [[ -z "${SLUICE_BIN:-}" ]]; then
    nice -n 5 cargo build --release -p sluice-broker --bin sluice-broker >&2
    SLUICE_BIN=target/release/sluice-broker
fi
WORK="${WORK:-$(mktemp -d /tmp/sluice-startup.XXXXXX)}"
DATA="$WORK/data"
LOG="$WORK/broker.log"
mkdir -p "$DATA"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT="$(free_port)"
HTTP="$(free_port)"
PID=""
WRAP=()

now() { date +%s.%N; }

spawn() { # spawn [broker args...]: starts the broker on $DATA in the background, sets PID
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${SLUICE_RUST_LOG:-warn}" \
        "${WRAP[@]}" "$SLUICE_BIN" "$@" --data-dir "$DATA" \
        --listen "127.0.0.1:$PORT" --advertise "127.0.0.1:$PORT" \
        --http-listen "127.0.0.1:$HTTP" --fsync "$FSYNC" \
        >>"$LOG" 2>&1 </dev/null &
    PID=$!
}

wait_ready() { # wait_ready: polls /readyz until 200 (fails after 300 s or if the broker exits)
    local deadline=$((SECONDS + 300))
    until curl -fs -o /dev/null "http://127.0.0.1:$HTTP/readyz"; do
        kill -0 "$PID" 2>/dev/null || { echo "broker exited; see $LOG" >&2; exit 1; }
        ((SECONDS < deadline)) || { echo "not ready after 300 s; see $LOG" >&2; exit 1; }
        sleep 0.01
    done
}

stop() { # stop: SIGTERM and wait (a clean shutdown)
    kill -TERM "$PID"
    wait "$PID" || true
}
trap '[[ -n "$PID" ]] && kill -KILL "$PID" 2>/dev/null; true' EXIT

if [[ "${REUSE:-0}" == 1 ]]; then
    [[ -d "$DATA" ]] || { echo "REUSE=1 but $DATA does not exist" >&2; exit 1; }
    # Whatever stopped there last: one start and clean stop with this build first.
    spawn
    wait_ready
    stop
else
    spawn --default-partitions "$PARTITIONS"
    wait_ready
    until [[ "$(kcat -L -b "127.0.0.1:$PORT" -t many 2>/dev/null | grep -c 'partition [0-9]*, leader 0')" == "$PARTITIONS" ]]; do
        ((SECONDS < 600)) || { echo "topic not created after 600 s; see $LOG" >&2; exit 1; }
        sleep 0.5
    done
    if ((RECORDS > 0)); then
        python3 -c "
import sys
pad = 'x' * $RECORD_BYTES
for i in range($RECORDS):
    sys.stdout.write(f'k{i}:{pad}\n')
" | kcat -P -b "127.0.0.1:$PORT" -t many -K: -X queue.buffering.max.messages=1000000
    fi
    stop
fi
if [[ "${REUSE:-0}" == 1 ]]; then
    echo "reused data in $DATA ($(du -sh "$DATA" | cut -f1)), fsync $FSYNC, cold page cache: ${COLD:-0}"
else
    echo "$PARTITIONS partitions, $RECORDS records of $RECORD_BYTES B, fsync $FSYNC, data in $DATA ($(du -sh "$DATA" | cut -f1)), cold page cache: ${COLD:-0}"
fi

evict() { # evict: drops the data directory's files from the page cache (they are clean after a stop)
    python3 - "$DATA" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
PY
}

for ((i = 1; i <= RESTARTS; i++)); do
    if [[ "${COLD:-0}" == 1 ]]; then evict; fi
    t0="$(now)"
    spawn
    wait_ready
    t1="$(now)"
    stop
    echo "restart $i: $(python3 -c "print(f'{$t1 - $t0:.2f}')") s to ready"
done

if [[ "$STRACE" == 1 ]]; then
    WRAP=(strace -f -c -o "$WORK/strace.txt")
    spawn
    wait_ready
    # strace is the process: signal the broker itself, then wait for strace to write its summary
    kill -TERM "$(pgrep -P "$PID")"
    wait "$PID" || true
    echo "strace -f -c of one start and clean stop ($WORK/strace.txt):"
    head -n 20 "$WORK/strace.txt"
fi
echo "load average: $(uptime | sed 's/.*load average: //')"
