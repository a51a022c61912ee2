#!/usr/bin/env bash
# Operator figures on the e2e control plane (kube-apiserver, etcd, kwok nodes, the pod runner
# starting a real sluice-broker per broker pod): create-to-StatefulSet latency, time until every
# MessageQueue is Available, the operator's RSS and idle CPU with them all (e2e/src/bin/operator-bench.rs).
#
# Usage: flock /tmp/sluice-e2e.lock bench/operator.sh
# Env (optional):
#   COUNT=500 MEASURE=200 RATE=5   MessageQueues per phase, creations reported, creations per second
#   IDLE_SECONDS=60                the idle window with all of them Available
#   BURST=1                        also create COUNT back to back in a second namespace
#   NODES=6                        kwok nodes (110 pods each; their pod CIDRs hold the brokers' IPs)
#   HEAPTRACK=1                    attach heaptrack to the operator once it runs: a heap profile in
#                                  OUT_DIR/heaptrack.*.zst (heaptrack_print it); the latency and RSS
#                                  figures of such a run are distorted by the profiler
#   OUT_DIR=dir                    results (operator.jsonl, report.md, the e2e logs); default
#                                  /tmp/sluice-operator-bench-<utc>
# Every MessageQueue has `replicas: 1`: COUNT broker processes run at once on this machine.
# The control plane is always stopped at the end (trap), as e2e/scripts/run.sh does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
COUNT="${COUNT:-500}"
MEASURE="${MEASURE:-200}"
RATE="${RATE:-5}"
IDLE_SECONDS="${IDLE_SECONDS:-60}"
BURST="${BURST:-1}"
export SLUICE_E2E_NODES="${NODES:-6}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT_DIR="${OUT_DIR:-/tmp/sluice-operator-bench-$STAMP}"
mkdir -p "$OUT_DIR"
log() { echo "[operator-bench $(date -u +%H:%M:%S)] $*" | tee -a "$OUT_DIR/bench.log" >&2; }

# The e2e lock of e2e/scripts/run.sh: one control plane on this machine at a time.
SLUICE_CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$SLUICE_CACHE"
exec 9>"$SLUICE_CACHE/e2e.lock"
flock -w 1800 9 || { log "gave up waiting for $SLUICE_CACHE/e2e.lock"; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    cp e2e/.work/operator.log e2e/.work/pod-runner.log "$OUT_DIR/" 2>/dev/null || true
    e2e/scripts/operator.sh stop || true
    e2e/scripts/cluster.sh down || true
    log "done (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "tools (cached) and helm"
e2e/scripts/tools.sh
eval "$(e2e/scripts/tools.sh --paths)"
export KUBECTL
HELM="$(scripts/helm.sh | tail -1)"
export HELM

log "build: release sluice-broker and sluice-operator, pod-runner and operator-bench"
cargo build --release --locked -p sluice-broker -p sluice-operator >"$OUT_DIR/cargo.log" 2>&1
cargo build --locked -p sluice-e2e --bins >>"$OUT_DIR/cargo.log" 2>&1
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export SLUICE_BROKER_BIN="$TARGET_DIR/release/sluice-broker"
export SLUICE_OPERATOR_BIN="$TARGET_DIR/release/sluice-operator"

log "cluster up ($SLUICE_E2E_NODES kwok nodes)"
e2e/scripts/cluster.sh up
export KUBECONFIG="$ROOT/e2e/.work/kubeconfig"
e2e/scripts/operator.sh start
if [[ "${HEAPTRACK:-0}" == 1 ]]; then
    op_pid="$(cat e2e/.work/operator.pid)"
    log "heaptrack attached to the operator (pid $op_pid): the figures below are distorted"
    (cd "$OUT_DIR" && heaptrack -p "$op_pid" >"$OUT_DIR/heaptrack.log" 2>&1) &
fi

{
    echo "run $STAMP: $(nproc) cores, $(uname -sr); sluice $(git rev-parse --short HEAD)"
    echo "COUNT=$COUNT MEASURE=$MEASURE RATE=$RATE IDLE_SECONDS=$IDLE_SECONDS BURST=$BURST NODES=$SLUICE_E2E_NODES"
    echo "uptime before: $(uptime)"
} >"$OUT_DIR/run.txt"
burst=()
[[ "$BURST" == 1 ]] && burst=(--burst)
log "operator-bench: $COUNT MessageQueues at $RATE/s$([[ "$BURST" == 1 ]] && echo ", then $COUNT back to back")"
"$TARGET_DIR/debug/operator-bench" --count "$COUNT" --measure "$MEASURE" --rate "$RATE" \
    --idle-seconds "$IDLE_SECONDS" "${burst[@]}" >"$OUT_DIR/operator.jsonl"
echo "uptime after: $(uptime)" >>"$OUT_DIR/run.txt"
python3 bench/report.py "$OUT_DIR/operator.jsonl" "$OUT_DIR/run.txt" >"$OUT_DIR/report.md"
cat "$OUT_DIR/report.md"
