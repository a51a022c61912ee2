#!/usr/bin/env bash
# The whole Sluice test suite: formatting, lints, unit tests, broker integration tests with real
# Kafka clients (librdkafka, kafka-python, confluent-kafka, kcat, Java, franz-go) on single brokers
# and multi-broker clusters, the operator's admin client against Apache Kafka and sluice-broker, the
# Helm chart checks, API-server tests of the CRD and the operator's RBAC, and the end-to-end suite on a real
# Kubernetes control plane with real broker processes. `.ci/run` calls exactly this.
#
# Everything it needs is installed from the package registries and cached by version under
# ~/.cache/sluice (a cold machine spends most of its first run building Kubernetes and helm).
#
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

step "build prerequisites (the tests' librdkafka links the system OpenSSL)"
# rdkafka's `ssl` feature finds OpenSSL with pkg-config; without them the failure would come
# minutes later, deep in a C build log.
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "scripts/test.sh: pkg-config is not installed; the tests' librdkafka needs it to find OpenSSL (Debian/Ubuntu: apt-get install pkg-config libssl-dev; Fedora: dnf install pkgconf-pkg-config openssl-devel)" >&2
  exit 1
fi
if ! pkg-config --exists openssl; then
  echo "scripts/test.sh: the OpenSSL development files are not installed (pkg-config finds no 'openssl'); the tests' librdkafka links them for TLS and SASL/SCRAM (Debian/Ubuntu: apt-get install libssl-dev; Fedora: dnf install openssl-devel)" >&2
  exit 1
fi
echo "OpenSSL $(pkg-config --modversion openssl) (pkg-config)"

step "cargo fmt --check"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "SKIPPED: rustfmt is not installed on this machine (the rustup component is unavailable)"
fi

step "cargo clippy --all-targets -- -D warnings"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "SKIPPED: clippy is not installed on this machine (the rustup component is unavailable)"
fi

step "Kafka clients for the broker tests (Python venv, kcat, Java kafka-clients and kafka-streams, franz-go, kafkajs, Kafka 4.2.0 tools and Connect)"
scripts/clients.sh >/dev/null
scripts/java-clients.sh >/dev/null
scripts/go-clients.sh >/dev/null
scripts/node-clients.sh >/dev/null
bench/kafka/setup.sh >/dev/null  # Kafka's tools (replication.rs, security.rs, ...) and Connect (connect.rs)

step "unit and integration tests (cargo test --workspace)"
cargo test --workspace --locked

step "Kubernetes tools (kube-apiserver, controller-manager, scheduler, kubectl, kwok, etcd, helm)"
e2e/scripts/tools.sh
scripts/helm.sh

step "Helm chart: lint, render, RBAC and security assertions"
charts/test.sh

step "CRD and controller on a real kube-apiserver (operator/scripts/apiserver-tests.sh)"
operator/scripts/apiserver-tests.sh

step "operator's Kafka admin client against Apache Kafka 4.2.0 and against sluice-broker"
operator/scripts/kafka-admin-tests.sh
scripts/operator-admin-vs-sluice.sh

step "chart RBAC on a real kube-apiserver, operator as the chart's ServiceAccount"
SLUICE_REQUIRE_APISERVER=1 charts/apiserver-test.sh

step "end-to-end suite (control plane + kwok nodes + real broker processes)"
bash e2e/scripts/run.sh

step "all green in $(( $(date +%s) - started ))s"
