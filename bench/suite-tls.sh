# bench/suite.sh's `tls` section (sourced by suite.sh; uses its helpers): what encryption and
# authentication cost. Each target is one broker with three listeners, PLAINTEXT, SSL and
# SASL_SSL (SCRAM-SHA-512), serving the same certificate (RSA 2048, made with openssl per run);
# the same sluice-loadgen runs go through each listener in turn: produce 1 partition, 1 KiB,
# acks=all for RUN_SECONDS, then consume everything that run wrote, from offset 0.
# Targets: Sluice (`fsync interval`) and Apache Kafka 4.2 (a PEM keystore, SCRAM users added at
# format time). The ratio SSL/PLAINTEXT of one target is the cost of TLS on that broker; CPU-s per
# GiB show where it goes.

TLS_PROTOCOLS="${TLS_PROTOCOLS:-PLAINTEXT SSL SASL_SSL}"
TLS_TARGETS="${TLS_TARGETS:-sluice-interval kafka}"

# tls_material: a CA, a broker certificate for 127.0.0.1 and a users file under $WORK/tls
tls_material() {
    local d="$WORK/tls"
    [[ -f "$d/keystore.pem" ]] && return 0
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca \
        -keyout "$d/ca.key" -out "$d/ca.crt" 2>>"$LOGS/openssl.log"
    openssl req -newkey rsa:2048 -nodes -subj /CN=bench-broker \
        -keyout "$d/tls.key" -out "$d/tls.csr" 2>>"$LOGS/openssl.log"
    openssl x509 -req -in "$d/tls.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
        -out "$d/tls.crt" -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n') \
        2>>"$LOGS/openssl.log"
    # Kafka's PEM keystore file: the (unencrypted PKCS#8) key, then the certificate chain
    cat "$d/tls.key" "$d/tls.crt" >"$d/keystore.pem"
    printf 'admin:admin-secret\n' >"$d/users"
    chmod 600 "$d/users" "$d/tls.key" "$d/ca.key" "$d/keystore.pem"
}

# tls_client_props PROTOCOL: the loadgen's -X settings for a listener of that protocol
tls_client_props() {
    local d="$WORK/tls"
    case "$1" in
        PLAINTEXT) ;;
        SSL) printf -- '-X\nsecurity.protocol=SSL\n-X\nssl.ca.location=%s\n' "$d/ca.crt" ;;
        SASL_SSL)
            printf -- '-X\nsecurity.protocol=SASL_SSL\n-X\nssl.ca.location=%s\n' "$d/ca.crt"
            printf -- '-X\nsasl.mechanism=SCRAM-SHA-512\n-X\nsasl.username=admin\n-X\nsasl.password=admin-secret\n'
            ;;
    esac
}

declare -A TLS_PORT=()

# tls_start TARGET: one broker with the three listeners; BOOTSTRAP is its PLAINTEXT one
tls_start() {
    TARGET="$1"
    TDIR="$WORK/$SECTION-$TARGET-r$ROUND"
    mkdir -p "$TDIR"
    local d="$WORK/tls" p since
    for p in $TLS_PROTOCOLS; do TLS_PORT[$p]="$(free_port)"; done
    [[ -n "${TLS_PORT[PLAINTEXT]:-}" ]] || TLS_PORT[PLAINTEXT]="$(free_port)"
    case "$TARGET" in
        sluice-interval)
            local listeners="PLAINTEXT://127.0.0.1:${TLS_PORT[PLAINTEXT]}"
            for p in $TLS_PROTOCOLS; do
                [[ "$p" == PLAINTEXT ]] || listeners+=",$p://127.0.0.1:${TLS_PORT[$p]}"
            done
            since="$(now_ns)"
            env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${SLUICE_RUST_LOG:-info}" \
                "${BROKER_CPU[@]}" "$SLUICE_BIN" --data-dir "$TDIR/data" --listeners "$listeners" \
                --http-listen "127.0.0.1:$(free_port)" --fsync interval --fsync-interval-ms 1000 \
                --ssl-certificate-file "$d/tls.crt" --ssl-key-file "$d/tls.key" --ssl-ca-file "$d/ca.crt" \
                --sasl-enabled-mechanisms SCRAM-SHA-512 --sasl-users-file "$d/users" \
                >>"$LOGS/sluice-$TARGET-r$ROUND.log" 2>&1 </dev/null &
            SLUICE_PIDS+=("$!")
            WATCH=("$!")
            ;;
        kafka)
            export KAFKA_PORT="${TLS_PORT[PLAINTEXT]}" KAFKA_CONTROLLER_PORT
            KAFKA_CONTROLLER_PORT="$(free_port)"
            local extra=""
            for p in $TLS_PROTOCOLS; do
                [[ "$p" == PLAINTEXT ]] || extra+="${extra:+,}$p://127.0.0.1:${TLS_PORT[$p]}"
            done
            cat >"$TDIR/tls.properties" <<PROPS
ssl.keystore.type=PEM
ssl.keystore.location=$d/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$d/ca.crt
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
            KAFKA_DIRS=("$TDIR")
            # start.sh writes server.properties on every call: both calls get the extras
            local env=(KAFKA_EXTRA_LISTENERS="$extra" KAFKA_EXTRA_PROPERTIES="$TDIR/tls.properties"
                KAFKA_FORMAT_ARGS="--add-scram SCRAM-SHA-512=[name=admin,password=admin-secret]")
            env "${env[@]}" KAFKA_FORMAT_ONLY=1 "$KAFKA_DIR/start.sh" "$TDIR" >/dev/null 2>>"$LOGS/kafka-start.log" \
                || { record "start" '{"mode":"start","failed":"format failed"}'; return 1; }
            since="$(now_ns)"
            env "${env[@]}" "${BROKER_CPU[@]}" "$KAFKA_DIR/start.sh" "$TDIR" >"$TDIR/start.out" 2>>"$LOGS/kafka-start.log" \
                || { record "start" '{"mode":"start","failed":"start.sh failed"}'; return 1; }
            WATCH=("$(tail -n 1 "$TDIR/start.out")")
            ;;
    esac
    BOOTSTRAP="127.0.0.1:${TLS_PORT[PLAINTEXT]}"
    lg "start (empty dir)" 200 ready --bootstrap "$BOOTSTRAP" --brokers 1 --since-ns "$since" --timeout-seconds 180
}

section_tls() {
    command -v openssl >/dev/null || fail "the tls section needs openssl"
    tls_material
    local t p
    for t in $(order "$TLS_TARGETS"); do
        tls_start "$t" || { stop_target; continue; }
        for p in $TLS_PROTOCOLS; do
            local topic="tls-${p,,}" props w
            BOOTSTRAP="127.0.0.1:${TLS_PORT[PLAINTEXT]}"
            create "$topic" 1 1
            BOOTSTRAP="127.0.0.1:${TLS_PORT[$p]}"
            mapfile -t props < <(tls_client_props "$p")
            produce "produce 1p 1024B acks=all over $p" "$topic" --record-size 1024 --acks all "${props[@]}"
            mapfile -t w < <(watch_args)
            lg "consume from offset 0 over $p" 600 consume --bootstrap "$BOOTSTRAP" --topic "$topic" \
                "${w[@]}" "${props[@]}"
            BOOTSTRAP="127.0.0.1:${TLS_PORT[PLAINTEXT]}"
            delete "$topic"
        done
        stop_target
    done
}
