#!/usr/bin/env bash
# Installs the Kafka clients the broker integration tests drive besides librdkafka (which the
# `rdkafka` crate builds from source):
#   - a Python venv with kafka-python (pure Python) and confluent-kafka (bundled librdkafka),
#     plus the compression codecs kafka-python needs, cached at
#     $SLUICE_CACHE/venv-<python-version>-<hash of the pinned versions> (SLUICE_CACHE defaults to
#     ~/.cache/sluice);
#   - kcat from Debian (old librdkafka 2.0.2) when apt-get is available (SLUICE_SKIP_KCAT=1 skips it);
#   - what the `rdkafka` dev-dependency needs to build librdkafka from source with its configure
#     script: make, a C/C++ compiler, perl. Run this script BEFORE `cargo test` builds the tests.
#
# Idempotent: a complete cached venv is reused as is. The last line of stdout is the path of the
# venv's python; the Rust tests run this script and read that line (or take env SLUICE_PYTHON).
# Progress goes to stderr. Any failure names the step that failed.
set -euo pipefail

PINS=(
  "kafka-python==3.0.12"
  "confluent-kafka==2.16.1"
  "python-snappy==0.7.3"
  "cramjam==2.14.0"
  "lz4==4.4.5"
  "zstandard==0.25.0"
)

step() { echo "clients.sh: $*" >&2; }
fail() { echo "clients.sh: FAILED at step '$1': $2" >&2; exit 1; }

apt_install() {
  # apt_install STEP PACKAGE...: installs Debian packages, running apt-get update once if needed.
  local what="$1"; shift
  if ! command -v apt-get >/dev/null 2>&1 || [[ "$(id -u)" != "0" ]]; then
    fail "$what" "need Debian packages '$*' but apt-get as root is not available; install them by hand"
  fi
  step "$what: apt-get install $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; then
    step "$what: apt-get install failed; running apt-get update and retrying"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || fail "$what" "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 || fail "$what" "apt-get install $* failed"
  fi
}

step "checking the librdkafka build prerequisites (make, cc, c++, perl)"
need=()
command -v make >/dev/null 2>&1 || need+=(make)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v perl >/dev/null 2>&1 || need+=(perl)
if [[ ${#need[@]} -gt 0 ]]; then apt_install "librdkafka build prerequisites" "${need[@]}"; fi

PY="${SLUICE_BASE_PYTHON:-python3}"
step "finding the base python ($PY)"
command -v "$PY" >/dev/null 2>&1 || fail "find python" "'$PY' is not on PATH; install python3 (>= 3.9) with the venv module"
PYVER="$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" \
  || fail "find python" "'$PY' does not run"

HASH="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
VENV="$CACHE/venv-$PYVER-$HASH"
MARKER="$VENV/.sluice-complete"

if [[ -f "$MARKER" && -x "$VENV/bin/python" ]]; then
  step "reusing cached venv $VENV"
else
  step "creating venv $VENV"
  mkdir -p "$CACHE" || fail "create cache dir" "cannot create $CACHE"
  # No marker means a previous run stopped half way: start again from scratch.
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || fail "create venv" "'$PY -m venv $VENV' failed (on Debian: apt-get install python3-venv)"
  step "installing ${PINS[*]}"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q "${PINS[@]}" \
    || fail "pip install" "could not install ${PINS[*]} from PyPI into $VENV"
  step "checking the installed clients import and have every codec"
  "$VENV/bin/python" - <<'EOF' || fail "verify venv" "the clients or codecs do not import (see the traceback above)"
import confluent_kafka, kafka
from kafka.codec import has_snappy, has_lz4, has_zstd
missing = [n for n, ok in (("snappy", has_snappy()), ("lz4", has_lz4()), ("zstd", has_zstd())) if not ok]
if missing:
    raise SystemExit("kafka-python lacks codecs: " + ", ".join(missing))
EOF
  touch "$MARKER"
fi

if [[ "${SLUICE_SKIP_KCAT:-0}" != "1" ]]; then
  if command -v kcat >/dev/null 2>&1; then
    step "kcat present: $(command -v kcat)"
  else
    apt_install "install kcat" kcat
  fi
fi

step "done"
echo "$VENV/bin/python"
