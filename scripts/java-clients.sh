#!/usr/bin/env bash
# Fetches the Java Kafka client (org.apache.kafka:kafka-clients), Kafka Streams
# (org.apache.kafka:kafka-streams, same version) and their runtime dependencies (compression
# codecs, RocksDB, slf4j with a simple binding) from Maven Central into
# $SLUICE_CACHE/java-clients-streams-<version>/ (SLUICE_CACHE defaults to ~/.cache/sluice), with
# `mvn dependency:copy-dependencies` on a small generated pom. Checks that java and javac (>= 11) are present.
#
# Idempotent: a complete cached directory is reused as is. The last line of stdout is the cache
# directory (jars in it, one per dependency); the Rust tests (broker/tests/java_client.rs) run this
# script and read that line, or take env SLUICE_JAVA_CLIENTS_DIR. Progress goes to stderr.
# Any failure names the step that failed.
set -euo pipefail

KAFKA_CLIENTS_VERSION="${SLUICE_KAFKA_CLIENTS_VERSION:-4.4.0}"
SLF4J_VERSION="1.7.36"  # the slf4j-api version kafka-clients depends on

step() { echo "java-clients.sh: $*" >&2; }
fail() { echo "java-clients.sh: FAILED at step '$1': $2" >&2; exit 1; }

step "checking java and javac"
command -v java >/dev/null 2>&1 || fail "find java" "java is not on PATH (Debian: apt-get install openjdk-17-jdk-headless)"
command -v javac >/dev/null 2>&1 || fail "find javac" "javac is not on PATH (Debian: apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null 2>&1 || fail "find mvn" "mvn is not on PATH (Debian: apt-get install maven)"

CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
# The folder names the jar set: a cache of an earlier set (clients only) is never taken for it.
DIR="$CACHE/java-clients-streams-$KAFKA_CLIENTS_VERSION"
MARKER="$DIR/.sluice-complete"

if [[ -f "$MARKER" ]]; then
  step "reusing cached jars in $DIR"
else
  # No marker means a previous run stopped half way: start again from scratch.
  rm -rf "$DIR"
  mkdir -p "$DIR/jars" || fail "create cache dir" "cannot create $DIR"
  cat >"$DIR/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.sluice</groupId>
  <artifactId>java-clients-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-clients</artifactId>
      <version>$KAFKA_CLIENTS_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-streams</artifactId>
      <version>$KAFKA_CLIENTS_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
  step "mvn dependency:copy-dependencies (kafka-clients and kafka-streams $KAFKA_CLIENTS_VERSION) into $DIR/jars"
  mvn -B -q -f "$DIR/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$DIR/jars" -DincludeScope=runtime >&2 \
    || fail "mvn copy-dependencies" "could not fetch org.apache.kafka:kafka-clients and kafka-streams $KAFKA_CLIENTS_VERSION from Maven Central"
  for jar in kafka-clients kafka-streams; do
    ls "$DIR/jars/$jar-$KAFKA_CLIENTS_VERSION.jar" >/dev/null 2>&1 \
      || fail "verify jars" "$jar-$KAFKA_CLIENTS_VERSION.jar is not in $DIR/jars"
  done
  touch "$MARKER"
fi

step "done"
echo "$DIR"
