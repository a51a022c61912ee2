#!/usr/bin/env bash
# Prepares the Go Kafka clients github.com/twmb/franz-go (kgo and kadm),
# github.com/segmentio/kafka-go and github.com/IBM/sarama (pinned below) from the Go
# module proxy: a generated module at $SLUICE_CACHE/go-clients-<versions>/ (SLUICE_CACHE defaults to
# ~/.cache/sluice) whose go.mod/go.sum
# pin the client, with every module downloaded into the Go module cache. Checks that go is present.
#
# Idempotent: a complete cached module is reused as is. The last line of stdout is that module
# directory; broker/tests/go_client.rs runs this script, copies its go.mod/go.sum next to
# broker/tests/go/main.go in a build dir keyed by a hash of the source, and runs `go build` there
# (or takes env SLUICE_GO_CLIENTS_DIR). Progress goes to stderr. Failures name the step.
set -euo pipefail

FRANZ_GO_VERSION="v1.22.3"
KADM_VERSION="v1.19.0"
KAFKA_GO_VERSION="v0.4.51"
SARAMA_VERSION="v1.61.1"

step() { echo "go-clients.sh: $*" >&2; }
fail() { echo "go-clients.sh: FAILED at step '$1': $2" >&2; exit 1; }

step "checking go"
command -v go >/dev/null 2>&1 || fail "find go" "go is not on PATH (franz-go $FRANZ_GO_VERSION needs Go >= 1.26; install it from https://go.dev/dl)"
GOVER="$(go env GOVERSION)" || fail "find go" "'go env GOVERSION' failed"

CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
DIR="$CACHE/go-clients-franz-go-$FRANZ_GO_VERSION-kadm-$KADM_VERSION-kafka-go-$KAFKA_GO_VERSION-sarama-$SARAMA_VERSION"
MARKER="$DIR/.sluice-complete"

if [[ -f "$MARKER" ]]; then
  step "reusing cached module $DIR ($GOVER)"
else
  rm -rf "$DIR"
  mkdir -p "$DIR" || fail "create cache dir" "cannot create $DIR"
  cat >"$DIR/go.mod" <<MOD
module sluice.dev/broker-tests/goclient

go 1.26

require (
	github.com/twmb/franz-go $FRANZ_GO_VERSION
	github.com/twmb/franz-go/pkg/kadm $KADM_VERSION
	github.com/segmentio/kafka-go $KAFKA_GO_VERSION
	github.com/IBM/sarama $SARAMA_VERSION
)
MOD
  # A stand-in main that imports what the test driver imports, so `go mod tidy` keeps every module.
  cat >"$DIR/main.go" <<'SRC'
package main

import (
	_ "github.com/IBM/sarama"
	_ "github.com/segmentio/kafka-go"
	_ "github.com/twmb/franz-go/pkg/kadm"
	_ "github.com/twmb/franz-go/pkg/kgo"
)

func main() {}
SRC
  step "resolving franz-go $FRANZ_GO_VERSION, kadm $KADM_VERSION, kafka-go $KAFKA_GO_VERSION and sarama $SARAMA_VERSION through the module proxy ($GOVER)"
  (cd "$DIR" && GOFLAGS=-mod=mod go mod tidy >&2) \
    || fail "go mod tidy" "could not fetch github.com/twmb/franz-go $FRANZ_GO_VERSION / kadm $KADM_VERSION / github.com/segmentio/kafka-go $KAFKA_GO_VERSION / github.com/IBM/sarama $SARAMA_VERSION"
  (cd "$DIR" && GOFLAGS=-mod=mod go build -o /dev/null . >&2) \
    || fail "go build" "the pinned modules do not build with $GOVER"
  grep -q "github.com/twmb/franz-go $FRANZ_GO_VERSION" "$DIR/go.mod" \
    || fail "verify pins" "go mod tidy changed the franz-go version in $DIR/go.mod"
  grep -q "github.com/IBM/sarama $SARAMA_VERSION" "$DIR/go.mod" \
    || fail "verify pins" "go mod tidy changed the sarama version in $DIR/go.mod"
  touch "$MARKER"
fi

step "done"
echo "$DIR"
