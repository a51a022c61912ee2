#!/usr/bin/env bash
# Installs the Node.js Kafka client kafkajs (pure JavaScript, its own protocol code; pinned below)
# from the npm registry into $SLUICE_CACHE/node-clients-kafkajs-<version>/node_modules
# (SLUICE_CACHE defaults to ~/.cache/sluice). Checks that node (>= 18) and npm are present.
#
# Idempotent: a complete cached install is reused as is. The last line of stdout is that
# directory; broker/tests/node_client.rs runs this script and runs its driver
# (broker/tests/node/kafkajs_client.js) with NODE_PATH pointing into it (or takes env
# SLUICE_NODE_CLIENTS_DIR). Progress goes to stderr. Failures name the step.
set -euo pipefail

KAFKAJS_VERSION="2.2.4"

step() { echo "node-clients.sh: $*" >&2; }
fail() { echo "node-clients.sh: FAILED at step '$1': $2" >&2; exit 1; }

step "checking node and npm"
command -v node >/dev/null 2>&1 || fail "find node" "node is not on PATH (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || fail "find npm" "npm is not on PATH (Debian: apt-get install npm)"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')" || fail "find node" "'node -p' failed"
[[ "$NODE_MAJOR" -ge 18 ]] || fail "find node" "kafkajs $KAFKAJS_VERSION is tested here with node >= 18, found $(node --version)"

CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
DIR="$CACHE/node-clients-kafkajs-$KAFKAJS_VERSION"
MARKER="$DIR/.sluice-complete"

if [[ -f "$MARKER" ]]; then
  step "reusing cached install $DIR"
else
  # No marker means a previous run stopped half way: start again from scratch.
  rm -rf "$DIR"
  mkdir -p "$DIR" || fail "create cache dir" "cannot create $DIR"
  cat >"$DIR/package.json" <<PKG
{
  "name": "sluice-broker-tests-node-clients",
  "private": true,
  "dependencies": { "kafkajs": "$KAFKAJS_VERSION" }
}
PKG
  step "npm install kafkajs@$KAFKAJS_VERSION into $DIR"
  (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error >&2) \
    || fail "npm install" "could not install kafkajs@$KAFKAJS_VERSION from the npm registry"
  (cd "$DIR" && node -e 'const k = require("kafkajs"); if (!k.Kafka) process.exit(1)') \
    || fail "verify install" "kafkajs does not load from $DIR/node_modules"
  touch "$MARKER"
fi

step "done"
echo "$DIR"
