#!/usr/bin/env bash
# Stop the Kafka started by bench/kafka/start.sh WORKDIR: SIGTERM, wait up to 30 s for the clean
# shutdown, then SIGKILL. Only the pid recorded in WORKDIR/kafka.pid is signalled.
set -euo pipefail
WORKDIR="${1:?usage: stop.sh WORKDIR}"
PIDFILE="$WORKDIR/kafka.pid"
[[ -f "$PIDFILE" ]] || { echo "[kafka-stop] no $PIDFILE: nothing to stop" >&2; exit 0; }
pid="$(cat "$PIDFILE")"
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "[kafka-stop] pid $pid still alive after 30 s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
fi
rm -f "$PIDFILE"
echo "[kafka-stop] stopped pid $pid" >&2
