# bench/suite.sh's `share` section (sourced by suite.sh; uses its helpers): share groups (KIP-932)
# on a work queue, the same Java client (Kafka 4.2's ShareConsumerPerformance, which accepts every
# record it gets) against Sluice and Apache Kafka.
#
# Per target: SHARE_RECORDS 1 KiB records are produced first (ProducerPerformance, acks=all) into
# a 1-partition and a 16-partition topic; each share group starts at the earliest offset (Kafka:
# the group config `share.auto.offset.reset=earliest` set with kafka-configs.sh before the group's
# first fetch; Sluice: the same key as a topic config of the queue, as the operator sets it for
# `type: queue`), then SHARE_THREADS consumers in one group drain the backlog.
# A share group's throughput is bounded by record locking and acknowledgement, so it is reported
# beside, not instead of, the plain consumer figures of the backlog section.

SHARE_RECORDS="${SHARE_RECORDS:-300000}"
SHARE_THREADS="${SHARE_THREADS:-1 4}"

# share_group_earliest GROUP: the group config both brokers need before the group's first fetch
share_group_earliest() {
    java_setup
    timeout 60 "${JAVA_TOOL[@]}" kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter \
        --entity-type groups --entity-name "$1" --add-config share.auto.offset.reset=earliest \
        >>"$LOGS/java.log" 2>&1
}

# java_share_consume LABEL TOPIC RECORDS THREADS: ShareConsumerPerformance in a fresh group
java_share_consume() {
    local label="$1" topic="$2" records="$3" threads="$4"
    java_setup
    local group="share-$RANDOM$RANDOM" out="$WORK/scp.out" rc=0 b0 b1
    if [[ "$TARGET" == kafka ]] && ! share_group_earliest "$group"; then
        record "$label" "{\"mode\":\"java-share\",\"failed\":\"setting share.auto.offset.reset on group $group failed (see logs/java.log)\"}"
        log "    failed: group config"
        return 0
    fi
    log "  $SECTION/$TARGET r$ROUND: $label (ShareConsumerPerformance, load1 $(load1))"
    b0="$(cpu_s)"
    /usr/bin/time -f '%U %S %e' -o "$WORK/scp.time" timeout 300 "${CLIENT_CPU[@]}" "${JAVA_TOOL[@]}" \
        org.apache.kafka.tools.ShareConsumerPerformance --bootstrap-server "$BOOTSTRAP" --topic "$topic" \
        --group "$group" --num-records "$records" --threads "$threads" --timeout 30000 >"$out" 2>&1 || rc=$?
    b1="$(cpu_s)"
    cat "$out" >>"$LOGS/java.log"
    # start.time, end.time, data.consumed.in.MB, MB.sec, nMsg.sec, data.consumed.in.nMsg, fetch.time.ms
    local line
    line="$(grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} .*, [0-9]+, [0-9]+$' "$out" | tail -n 1 || true)"
    if [[ -z "$line" ]]; then
        record "$label" "{\"mode\":\"java-share\",\"failed\":$(json_str "exit $rc: $(grep -v SLF4J "$out" | grep -m 2 -E 'Exception|Error' | tr '\n' ' ')")}"
        log "    failed: exit $rc"
        return 0
    fi
    echo "    $line" >&2
    record "$label" "$(awk -v l="$line" -v threads="$threads" -v b="$(awk -v a="$b0" -v c="$b1" 'BEGIN { print c - a }')" -v timef="$WORK/scp.time" 'BEGIN {
        split(l, f, /, /)
        while ((getline line < timef) > 0) { if (split(line, t, " ") == 3 && t[1] ~ /^[0-9.]+$/) { cu = t[1] + t[2] } }
        gib = f[3] / 1024
        printf "{\"mode\":\"java-share\",\"consumers\":%d,\"records\":%d,\"mib_s\":%s,\"records_s\":%s,\"client_cpu_s_per_gib\":%.2f,\"broker_cpu_s\":%.2f,\"broker_cpu_s_per_gib\":%.2f}",
            threads, f[6], f[4], f[5], cu / gib, b, b / gib
    }')"
}

section_share() {
    local t parts n
    for t in $(order "$FEW_TARGETS"); do
        start_target "$t" || { stop_target; continue; }
        for parts in 1 16; do
            if [[ "$t" == kafka ]]; then
                create "sq$parts" "$parts" 1
            else
                create "sq$parts" "$parts" 1 share.auto.offset.reset=earliest
            fi
            java_produce "fill ${parts}p for share groups (ProducerPerformance, acks=all)" "sq$parts" "$SHARE_RECORDS" -1 all
            for n in $SHARE_THREADS; do
                java_share_consume "share group ${parts}p, $n consumers, 1024B" "sq$parts" "$SHARE_RECORDS" "$n"
            done
        done
        stop_target
    done
}
