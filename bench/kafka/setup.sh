#!/usr/bin/env bash
# Fetch Apache Kafka 4.x (broker + tools + Connect's file connectors + a log4j2 binding) from Maven Central into
# $SLUICE_CACHE/kafka-<version>/lib (SLUICE_CACHE defaults to ~/.cache/sluice). Idempotent: a complete cache is reused as is.
# Usage: bench/kafka/setup.sh            (prints the lib dir on the last line of stdout)
#   KAFKA_VERSION=4.1.1 bench/kafka/setup.sh
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.2.0}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}/kafka-$KAFKA_VERSION"
LIB="$CACHE/lib"
STAMP="$CACHE/.complete"

step() { echo "[kafka-setup] $*" >&2; }
fail() { echo "[kafka-setup] FAILED at step: $*" >&2; exit 1; }

# A cache made before the file connectors were in the set lacks their jar: resolve again.
if [[ -f "$STAMP" ]] && [[ -f "$LIB/connect-file-$KAFKA_VERSION.jar" ]]; then
    step "cached: $LIB ($(find "$LIB" -name "*.jar" | wc -l) jars)"
    echo "$LIB"
    exit 0
fi

step "1/4 checking tools (java >= 17, mvn)"
command -v java >/dev/null || fail "1/4 java not found (apt-get install openjdk-17-jre-headless)"
command -v mvn >/dev/null || fail "1/4 mvn not found (apt-get install maven)"
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
[[ "${java_major:-0}" -ge 17 ]] || fail "1/4 Kafka 4.x brokers need Java 17+, found '${java_major:-?}'"

step "2/4 writing resolver pom for Kafka $KAFKA_VERSION"
mkdir -p "$CACHE"
WORK="$CACHE/resolve"
rm -rf "$WORK" "$LIB.partial"
mkdir -p "$WORK"
cat > "$WORK/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.sluice.bench</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <properties>
    <kafka.version>$KAFKA_VERSION</kafka.version>
    <log4j.version>2.24.3</log4j.version>
  </properties>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>\${kafka.version}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>\${kafka.version}</version></dependency>
    <!-- Connect's FileStream connectors: the Kafka Connect test (broker/tests/connect.rs) -->
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-file</artifactId><version>\${kafka.version}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>\${log4j.version}</version></dependency>
    <!-- Kafka 4.x pins slf4j-api 1.7.x, so the 1.x binding (log4j-slf4j-impl), not slf4j2-impl -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>\${log4j.version}</version></dependency>
  </dependencies>
</project>
POM

step "3/4 mvn dependency:copy-dependencies (first run downloads ~100 jars)"
if ! mvn -B -q -f "$WORK/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIB.partial" >"$WORK/mvn.log" 2>&1; then
    tail -30 "$WORK/mvn.log" >&2
    fail "3/4 maven resolution of kafka_2.13/kafka-tools $KAFKA_VERSION (log: $WORK/mvn.log)"
fi

step "4/4 checking jars"
for want in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" "connect-file-$KAFKA_VERSION.jar"; do
    [[ -f "$LIB.partial/$want" ]] || fail "4/4 $want missing after resolution"
done
rm -rf "$LIB"
mv "$LIB.partial" "$LIB"
touch "$STAMP"
step "done: $LIB ($(find "$LIB" -name "*.jar" | wc -l) jars, $(du -sh "$LIB" | cut -f1))"
echo "$LIB"
