#!/usr/bin/env bash
# The whole e2e suite, for CI and by hand: tools (cached), build, cluster up, tests, cluster down.
# The cluster is always stopped at the end, also when a step fails (trap on EXIT).
#
#   e2e/scripts/run.sh               run every e2e test
#   e2e/scripts/run.sh brokers       run only tests/brokers.rs (any test target name)
#   E2E_FILTER=volume_is_lost e2e/scripts/run.sh operator_more
#                                    only the tests whose name contains E2E_FILTER
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
T0=$(date +%s)
STEP="start"
log() { printf '[e2e %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - T0 ))" "$*" >&2; }

cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    log "FAILED at step: $STEP (exit $rc)"
    [ -f e2e/.work/pod-runner.log ] && { log "last lines of e2e/.work/pod-runner.log:"; tail -20 e2e/.work/pod-runner.log >&2; }
  fi
  e2e/scripts/cluster.sh down || true
  log "done in $(( $(date +%s) - T0 ))s (exit $rc)"
  exit $rc
}
# Pod IPs (127.1.0.0/16) and broker ports are machine-wide, so only one e2e cluster runs at a time.
# The lock lives in the cache root (SLUICE_CACHE, default ~/.cache/sluice): a run with another
# SLUICE_CACHE or HOME takes another lock and can collide with this one.
SLUICE_CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$SLUICE_CACHE"
exec 9>"$SLUICE_CACHE/e2e.lock"
if ! flock -n 9; then
  log "another e2e run holds $SLUICE_CACHE/e2e.lock; waiting (at most 30 min)"
  flock -w 1800 9 || { log "gave up waiting for the e2e lock"; exit 1; }
fi

trap cleanup EXIT
trap 'exit 130' INT TERM

STEP="tools (kube-apiserver & co, kwok, etcd: cached under $SLUICE_CACHE)"
log "$STEP"
e2e/scripts/tools.sh
eval "$(e2e/scripts/tools.sh --paths)"
export KUBECTL

STEP="helm (scripts/helm.sh, cached)"
log "$STEP"
HELM="$(scripts/helm.sh | tail -1)"
export HELM

# One build for the binaries (sluice-broker, sluice-operator, pod-runner) and the e2e tests, with
# the feature set of `cargo test --workspace`: after the test command's workspace step it finds
# everything built (`-p sluice-e2e` would build the dependencies again with other features).
STEP="cargo test --workspace --no-run: sluice-broker, sluice-operator, pod-runner, e2e tests"
log "$STEP"
cargo test --workspace --no-run

STEP="cluster up"
log "$STEP"
e2e/scripts/cluster.sh up
export KUBECONFIG="$ROOT/e2e/.work/kubeconfig"
export SLUICE_E2E=1

STEP="e2e tests"
log "$STEP"
targets=()
if [ $# -gt 0 ]; then
  for t in "$@"; do targets+=(--test "$t"); done
else
  for f in e2e/tests/*.rs; do targets+=(--test "$(basename "$f" .rs)"); done
fi
# `cargo test --workspace --test NAME` runs every package's test target of that name, so an e2e
# file named like a broker or operator test file would run that one again here, ignored tests
# included (an e2e replication.rs once ran the broker's 3-minute trials a second time in CI).
for t in "${targets[@]}"; do
  [ "$t" = --test ] && continue
  for other in broker/tests/"$t".rs operator/tests/"$t".rs; do
    if [ -f "$other" ]; then
      echo "e2e/scripts/run.sh: e2e test '$t' has the name of $other; rename the e2e file" >&2
      exit 2
    fi
  done
done
cargo test --workspace --no-fail-fast "${targets[@]}" -- ${E2E_FILTER:+"$E2E_FILTER"} --include-ignored --test-threads=1
STEP="done"
