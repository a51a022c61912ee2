//! Broker security with a real client: librdkafka authenticates with SASL/SCRAM-SHA-512 as a
//! user of the bootstrap users file (`--sasl-users-file`) on a SASL_PLAINTEXT listener; the
//! right password produces and consumes, a wrong one is refused and counted; the same over
//! TLS (SASL_SSL); with the ACL authorizer a user without ACLs gets nothing; hostile
//! connections (stalled TLS or SASL, garbage, a huge token) cost only themselves. The Java
//! client does the same over SASL_SSL, and Apache Kafka's own `kafka-configs.sh` and
//! `kafka-acls.sh` (4.2, run from their jars) create a user and grant her a topic prefix;
//! KIP-848 consumer-group members see only the topics their ACLs let them DESCRIBE.

mod common;

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::Offset;

const N: u64 = 50;
const LONG: Duration = Duration::from_secs(60);
const USER: &str = "alice";
const PASSWORD: &str = "alice-secret:with-colon";

/// A broker in this process with named listeners (the common `TestBroker` passes `--listen`,
/// which `--listeners` replaces).
struct SecureBroker {
    rt: tokio::runtime::Runtime,
    broker: Option<sluice_broker::Broker>,
    _dir: tempfile::TempDir,
}

impl SecureBroker {
    fn start(extra: &[&str]) -> SecureBroker {
        init_test_logging();
        let dir = tempfile::tempdir().expect("create temp data dir");
        let mut args: Vec<String> = [
            "sluice-broker",
            "--data-dir",
            &dir.path().display().to_string(),
            "--http-listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = sluice_broker::config::Config::parse_from(args);
        let rt = broker_runtime();
        let broker = rt
            .block_on(sluice_broker::Broker::start(config))
            .unwrap_or_else(|e| panic!("Broker::start: {e}"));
        SecureBroker {
            rt,
            broker: Some(broker),
            _dir: dir,
        }
    }

    fn broker(&self) -> &sluice_broker::Broker {
        self.broker.as_ref().expect("broker is running")
    }

    fn bootstrap(&self, listener: &str) -> String {
        self.broker()
            .listener_addr(listener)
            .unwrap_or_else(|| panic!("no listener {listener}"))
            .to_string()
    }

    /// The sum of a metric's samples whose line contains `filter`, from `/metrics`.
    fn metric(&self, name: &str, filter: &str) -> f64 {
        metric_sum(self.broker().http_addr(), name, filter)
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), b.shutdown()).await
            });
        }
    }
}

fn users_file(dir: &Path) -> String {
    let path = dir.join("users");
    std::fs::write(
        &path,
        format!("# bootstrap users\n{USER}:{PASSWORD}\nbob:bob-secret\n"),
    )
    .expect("write users file");
    path.display().to_string()
}

fn scram(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_PLAINTEXT".to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".to_string()),
        ("sasl.username", user.to_string()),
        ("sasl.password", password.to_string()),
    ]
}

fn borrowed<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

#[test]
fn rdkafka_scram_sha_512_user_from_the_users_file_is_served_and_a_wrong_password_refused() {
    let files = tempfile::tempdir().expect("temp dir");
    let users = users_file(files.path());
    let broker = SecureBroker::start(&[
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
        // Brokers do not use SASL among themselves: the inter-broker listener is another.
        "--inter-broker-listener-name",
        "PLAINTEXT",
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-512",
        "--sasl-users-file",
        &users,
    ]);
    let bs = broker.bootstrap("SASL_PLAINTEXT");
    let topic = topic_name("sasl");

    let good = scram(USER, PASSWORD);
    // ~450 KiB: fetches of it are file regions, sent with sendfile on this plaintext
    // (SASL) listener once the client authenticated.
    const MANY: u64 = 600;
    let acked = rd_produce_all(&bs, &topic, Some(0), 0..MANY, &borrowed(&good));
    assert_eq!(sorted_offsets(&acked), (0..MANY as i64).collect::<Vec<_>>());
    let reader = rd_reader(&bs, &topic, &[0], Offset::Beginning, &borrowed(&good));
    let got = rd_poll_n(&reader, MANY as usize, Duration::from_secs(60));
    assert_records_exact(&got, 0..MANY);
    assert!(broker.metric("sluice_fetched_bytes_total", "") >= 400_000.0);
    assert!(broker.metric("sluice_fetch_sendfile_bytes_total", "") > 0.0);
    assert!(
        broker.metric("sluice_sasl_authentications_total", "SCRAM-SHA-512") >= 1.0,
        "successful authentications are counted"
    );

    // A wrong password: no metadata, no records, and the failure is counted.
    let failures_before =
        broker.metric("sluice_sasl_authentication_failures_total", "SCRAM-SHA-512");
    let bad = scram(USER, "not-the-password");
    let refused = rd_consumer(&bs, &borrowed(&bad));
    let md = refused.fetch_metadata(Some(&topic), Duration::from_secs(5));
    assert!(
        md.is_err(),
        "metadata with a wrong password: {:?}",
        md.ok().map(|m| m.topics().len())
    );
    let unknown = scram("mallory", PASSWORD);
    let refused = rd_consumer(&bs, &borrowed(&unknown));
    assert!(
        refused
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .is_err(),
        "metadata as an unknown user"
    );
    common::wait_for(
        "the refused authentications are counted",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            (broker.metric("sluice_sasl_authentication_failures_total", "SCRAM-SHA-512")
                >= failures_before + 2.0)
                .then_some(())
        },
    );

    // A client without SASL on the SASL listener gets nothing either.
    let plain = rd_consumer(&bs, &[]);
    assert!(
        plain
            .fetch_metadata(Some(&topic), Duration::from_secs(3))
            .is_err(),
        "metadata without authenticating"
    );
}

/// A CA and a certificate for 127.0.0.1/localhost signed by it, as PEM files in `dir`:
/// (ca, certificate, key). Made now; no key is ever committed.
fn certificates(dir: &Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "sluice test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("broker key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("broker params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "broker-0");
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("broker certificate");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write PEM");
        path.display().to_string()
    };
    (
        write("ca.crt", ca_cert.pem()),
        write("tls.crt", cert.pem()),
        write("tls.key", key.serialize_pem()),
    )
}

#[test]
fn rdkafka_scram_sha_512_over_tls_is_served_and_a_plaintext_client_gets_nothing() {
    let files = tempfile::tempdir().expect("temp dir");
    let users = users_file(files.path());
    let (ca, cert, key) = certificates(files.path());
    let broker = SecureBroker::start(&[
        "--listeners",
        "SASL_SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
        "--inter-broker-listener-name",
        "PLAINTEXT",
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-512",
        "--sasl-users-file",
        &users,
        "--ssl-certificate-file",
        &cert,
        "--ssl-key-file",
        &key,
    ]);
    let bs = broker.bootstrap("SASL_SSL");
    let topic = topic_name("sasl-ssl");

    let mut good = scram(USER, PASSWORD);
    good[0].1 = "SASL_SSL".to_string();
    good.push(("ssl.ca.location", ca.clone()));
    // ~450 KiB: fetches of it are file regions, which a TLS connection reads and encrypts
    // (it cannot sendfile).
    const MANY: u64 = 600;
    let acked = rd_produce_all(&bs, &topic, Some(0), 0..MANY, &borrowed(&good));
    assert_eq!(sorted_offsets(&acked), (0..MANY as i64).collect::<Vec<_>>());
    let reader = rd_reader(&bs, &topic, &[0], Offset::Beginning, &borrowed(&good));
    let got = rd_poll_n(&reader, MANY as usize, Duration::from_secs(60));
    assert_records_exact(&got, 0..MANY);
    assert!(broker.metric("sluice_fetched_bytes_total", "") >= 400_000.0);
    assert_eq!(broker.metric("sluice_fetch_sendfile_bytes_total", ""), 0.0);

    // The right password without TLS on the TLS listener: the handshake fails, nothing served.
    let mut no_tls = scram(USER, PASSWORD);
    no_tls.truncate(4);
    let plain = rd_consumer(&bs, &borrowed(&no_tls));
    assert!(
        plain
            .fetch_metadata(Some(&topic), Duration::from_secs(3))
            .is_err(),
        "metadata over plaintext on the SASL_SSL listener"
    );
    common::wait_for(
        "the failed TLS handshake is counted",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (broker.metric("sluice_tls_handshake_failures_total", "") >= 1.0).then_some(()),
    );
}

/// A broker with the ACL authorizer and the super user alice: clients on a `client_listener`
/// (SASL_PLAINTEXT or SASL_SSL) listener with SCRAM-SHA-512, brokers on an SSL listener that
/// knows them by their certificates (an authorizer needs that). Returns the broker and the
/// CA certificate's path.
fn acl_broker(files: &Path, client_listener: &str) -> (SecureBroker, String) {
    let users = users_file(files);
    let (ca, cert, key) = certificates(files);
    let broker = SecureBroker::start(&[
        "--listeners",
        &format!("{client_listener}://127.0.0.1:0,INTERNAL://127.0.0.1:0"),
        "--listener-security-protocol-map",
        "INTERNAL:SSL",
        "--listener-ssl-client-auth",
        "INTERNAL:required",
        "--inter-broker-listener-name",
        "INTERNAL",
        "--ssl-certificate-file",
        &cert,
        "--ssl-key-file",
        &key,
        "--ssl-ca-file",
        &ca,
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-512",
        "--sasl-users-file",
        &users,
        "--authorizer",
        "acl",
        "--super-users",
        &format!("User:{USER}"),
    ]);
    (broker, ca)
}

/// One of Apache Kafka's tools (`main` class, `args`) run as the super user alice against the
/// SASL_SSL listener `bs` trusting the CA file `ca` (its `--command-config` written to `dir`).
fn admin_tool(dir: &Path, bs: &str, ca: &str) -> impl Fn(&str, &[&str]) -> Finished {
    let admin = write_client_properties(
        &dir.join("admin.properties"),
        &scram_sha_512_props(
            USER,
            PASSWORD,
            vec![
                ("ssl.truststore.type", "PEM".to_string()),
                ("ssl.truststore.location", ca.to_string()),
            ],
        ),
    );
    let bs = bs.to_string();
    move |main: &str, args: &[&str]| {
        let mut all = vec![
            "--bootstrap-server",
            bs.as_str(),
            "--command-config",
            &admin,
        ];
        all.extend_from_slice(args);
        kafka_tool(main, &all)
    }
}

#[test]
fn with_the_acl_authorizer_a_super_user_is_served_and_a_user_without_acls_gets_no_data() {
    let files = tempfile::tempdir().expect("temp dir");
    let (broker, _) = acl_broker(files.path(), "SASL_PLAINTEXT");
    let bs = broker.bootstrap("SASL_PLAINTEXT");
    let topic = topic_name("acl");

    let alice = scram(USER, PASSWORD);
    let acked = rd_produce_all(&bs, &topic, Some(0), 0..N, &borrowed(&alice));
    assert_eq!(sorted_offsets(&acked), (0..N as i64).collect::<Vec<_>>());

    // bob authenticates but no ACL allows him anything: his records are refused...
    let mut bob = scram("bob", "bob-secret");
    bob.push(("message.timeout.ms", "10000".to_string()));
    let p = rd_producer(&bs, &borrowed(&bob));
    for i in 0..5 {
        rd_send(&p, &topic, Some(0), N + i);
    }
    let _ = p.flush(Duration::from_secs(20));
    assert!(
        p.context().acked.lock().expect("lock").is_empty(),
        "a user without WRITE had records acknowledged"
    );
    let failed = p.context().failed.lock().expect("lock").clone();
    assert_eq!(failed.len(), 5, "bob's deliveries all fail: {failed:?}");
    assert!(
        failed
            .iter()
            .all(|(_, e)| e.to_ascii_lowercase().contains("authoriz")),
        "refused as unauthorized: {failed:?}"
    );
    // ... and he reads nothing.
    bob.pop();
    let reader = rd_reader(&bs, &topic, &[0], Offset::Beginning, &borrowed(&bob));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut records = 0;
    while std::time::Instant::now() < deadline {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(200)) {
            records += 1;
        }
    }
    assert_eq!(records, 0, "a user without READ got records");

    // The super user still reads everything, and nothing of bob's was written.
    let reader = rd_reader(&bs, &topic, &[0], Offset::Beginning, &borrowed(&alice));
    let got = rd_poll_n(&reader, N as usize, Duration::from_secs(60));
    assert_records_exact(&got, 0..N);
    assert_eq!(rd_watermarks_with(&bs, &topic, &alice), (0, N as i64));
}

fn rd_watermarks_with(bs: &str, topic: &str, settings: &[(&'static str, String)]) -> (i64, i64) {
    rd_consumer(bs, &borrowed(settings))
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("watermarks of {topic}: {e}"))
}

/// Whether the broker closes `s` within `limit` (whatever it sends before is read and
/// dropped: a TLS alert, an error response).
fn closed_within(s: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    let deadline = std::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn stalled_handshakes_garbage_and_huge_sasl_frames_cost_only_their_connection() {
    use std::io::Write;
    let files = tempfile::tempdir().expect("temp dir");
    let users = users_file(files.path());
    let (ca, cert, key) = certificates(files.path());
    let broker = SecureBroker::start(&[
        "--listeners",
        "SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
        "--inter-broker-listener-name",
        "PLAINTEXT",
        "--ssl-certificate-file",
        &cert,
        "--ssl-key-file",
        &key,
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-512",
        "--sasl-users-file",
        &users,
        "--authentication-timeout-ms",
        "1000",
    ]);
    let tls_addr = broker.broker().listener_addr("SASL_SSL").expect("SASL_SSL");
    let sasl_addr = broker
        .broker()
        .listener_addr("SASL_PLAINTEXT")
        .expect("SASL_PLAINTEXT");
    let connect = |a| std::net::TcpStream::connect(a).expect("connect");

    let mut stalled_tls = connect(tls_addr);
    let mut garbage = connect(tls_addr);
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write garbage");
    let mut stalled_sasl = connect(sasl_addr);
    let mut huge = connect(sasl_addr);
    // A SaslAuthenticate-sized frame far above the pre-authentication limit: only its length.
    huge.write_all(&(8i32 << 20).to_be_bytes())
        .expect("write length");

    // Meanwhile a real client on each SASL listener is served.
    let topic = topic_name("hostile");
    let mut over_tls = scram(USER, PASSWORD);
    over_tls[0].1 = "SASL_SSL".to_string();
    over_tls.push(("ssl.ca.location", ca));
    rd_produce_all(
        &broker.bootstrap("SASL_SSL"),
        &topic,
        Some(0),
        0..N,
        &borrowed(&over_tls),
    );
    let plain = scram(USER, PASSWORD);
    rd_produce_all(
        &broker.bootstrap("SASL_PLAINTEXT"),
        &topic,
        Some(0),
        N..2 * N,
        &borrowed(&plain),
    );

    let limit = Duration::from_secs(10);
    assert!(
        closed_within(&mut garbage, limit),
        "garbage before the hello: closed"
    );
    assert!(closed_within(&mut huge, limit), "huge SASL frame: closed");
    assert!(
        closed_within(&mut stalled_tls, limit),
        "stalled TLS handshake: closed"
    );
    assert!(
        closed_within(&mut stalled_sasl, limit),
        "unfinished SASL exchange: closed"
    );
    assert!(broker.metric("sluice_tls_handshake_failures_total", "timeout") >= 1.0);
    assert!(broker.metric("sluice_tls_handshake_failures_total", "not_tls") >= 1.0);
    assert!(broker.metric("sluice_sasl_authentication_failures_total", "") >= 2.0);

    let reader = rd_reader(
        &broker.bootstrap("SASL_PLAINTEXT"),
        &topic,
        &[0],
        Offset::Beginning,
        &borrowed(&plain),
    );
    let got = rd_poll_n(&reader, 2 * N as usize, Duration::from_secs(60));
    assert_records_exact(&got, 0..2 * N);
}

// ---------------------------------------------------------------------------------------------
// The Java client and Apache Kafka's own tools

/// rdkafka settings for `user` with SCRAM-SHA-512 on a SASL_SSL listener trusting `ca`.
fn scram_over_tls(user: &str, password: &str, ca: &str) -> Vec<(&'static str, String)> {
    let mut s = scram(user, password);
    s[0].1 = "SASL_SSL".to_string();
    s.push(("ssl.ca.location", ca.to_string()));
    s
}

#[test]
fn java_client_over_sasl_ssl_with_scram_sha_512_round_trips_byte_exact_and_a_wrong_password_is_refused(
) {
    let files = tempfile::tempdir().expect("temp dir");
    let users = users_file(files.path());
    let (ca, cert, key) = certificates(files.path());
    let broker = SecureBroker::start(&[
        "--listeners",
        "SASL_SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
        "--inter-broker-listener-name",
        "PLAINTEXT",
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-512",
        "--sasl-users-file",
        &users,
        "--ssl-certificate-file",
        &cert,
        "--ssl-key-file",
        &key,
    ]);
    let bs = broker.bootstrap("SASL_SSL");
    let ca_pem = std::fs::read_to_string(&ca).expect("read the CA certificate");
    let topic = topic_name("java-sasl-ssl");

    // The idempotent producer and a group consumer, both verifying the broker's certificate
    // against the test CA (given inline as PEM) and authenticating as alice.
    let java = JavaDriver::sasl_ssl_scram_sha_512(&bs, USER, PASSWORD, &ca_pem);
    let out = java.produce(&topic, 0..N, &["--partition", "0"]);
    let acked = acknowledged(&out);
    assert_eq!(
        acked.iter().map(|a| a.2).collect::<Vec<_>>(),
        (0..N as i64).collect::<Vec<_>>(),
        "acknowledged offsets"
    );
    let out = java.consume(&topic, "java-sasl-ssl", N, &[]);
    let got = parse_consumed_lines(&out.stdout);
    assert_records_exact(&got, 0..N);
    assert_each_at_its_index(&got);

    // A wrong password: the producer fails with an authentication error, nothing is written,
    // and the failure is counted.
    let failures_before =
        broker.metric("sluice_sasl_authentication_failures_total", "SCRAM-SHA-512");
    let wrong = JavaDriver::sasl_ssl_scram_sha_512(&bs, USER, "not-the-password", &ca_pem);
    let err = wrong.produce_fails(&topic, N..N + 5, &["--partition", "0"]);
    assert!(err.contains("SaslAuthenticationException"), "{err}");
    assert!(
        broker.metric("sluice_sasl_authentication_failures_total", "SCRAM-SHA-512")
            > failures_before,
        "the refused authentication is counted"
    );
    let alice = scram_over_tls(USER, PASSWORD, &ca);
    assert_eq!(rd_watermarks_with(&bs, &topic, &alice), (0, N as i64));
}

const ACL_COMMAND: &str = "org.apache.kafka.tools.AclCommand";
const CONFIG_COMMAND: &str = "kafka.admin.ConfigCommand";

#[test]
fn kafka_configs_creates_a_scram_user_and_kafka_acls_prefixed_grants_serve_only_its_topics_and_transactional_ids(
) {
    let files = tempfile::tempdir().expect("temp dir");
    let (broker, ca) = acl_broker(files.path(), "SASL_SSL");
    let bs = broker.bootstrap("SASL_SSL");
    let ca_pem = std::fs::read_to_string(&ca).expect("read the CA certificate");
    let tool = admin_tool(files.path(), &bs, &ca);

    // kafka-configs.sh creates carol (AlterUserScramCredentials) and describes her credential
    // (with the users' client quotas, DescribeClientQuotas: none); so does the Java Admin.
    tool(
        CONFIG_COMMAND,
        &[
            "--alter",
            "--add-config",
            "SCRAM-SHA-512=[password=carol-secret]",
            "--entity-type",
            "users",
            "--entity-name",
            "carol",
        ],
    );
    let out = tool(
        CONFIG_COMMAND,
        &[
            "--describe",
            "--entity-type",
            "users",
            "--entity-name",
            "carol",
        ],
    );
    assert!(
        out.stdout.contains(
            "SCRAM credential configs for user-principal 'carol' are SCRAM-SHA-512=iterations=4096"
        ),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let alice = JavaDriver::sasl_ssl_scram_sha_512(&bs, USER, PASSWORD, &ca_pem);
    let out = alice.admin(&["describe-scram-user", "--user", "carol"]);
    assert_eq!(
        tagged(&out, "scram"),
        vec!["carol SCRAM_SHA_512 iterations 4096"],
        "{}",
        out.stdout
    );

    // carol authenticates, but no ACL allows her anything yet.
    let prefix = topic_name("carol-app");
    let ours = format!("{prefix}-orders");
    // The administrator creates the topic: carol gets no CREATE, and a topic she may not create
    // answers TOPIC_AUTHORIZATION_FAILED until it exists (Kafka's rule for auto-creation).
    alice.admin(&["create-topic", "--topic", &ours]);
    let carol = JavaDriver::sasl_ssl_scram_sha_512(&bs, "carol", "carol-secret", &ca_pem);
    let err = carol.produce_fails(&ours, 0..1, &[]);
    assert!(
        err.contains("AuthorizationException") && !err.contains("SaslAuthenticationException"),
        "carol is known but not authorized: {err}"
    );

    // kafka-acls.sh: READ and WRITE on every topic whose name starts with the prefix, READ on
    // the groups with that prefix.
    tool(
        ACL_COMMAND,
        &[
            "--add",
            "--allow-principal",
            "User:carol",
            "--operation",
            "Read",
            "--operation",
            "Write",
            "--topic",
            &prefix,
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    tool(
        ACL_COMMAND,
        &[
            "--add",
            "--allow-principal",
            "User:carol",
            "--operation",
            "Read",
            "--group",
            &prefix,
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    let out = tool(
        ACL_COMMAND,
        &[
            "--list",
            "--topic",
            &prefix,
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    for want in ["User:carol", "READ", "WRITE", "PREFIXED"] {
        assert!(
            out.stdout.contains(want),
            "kafka-acls.sh --list lacks {want}: {}",
            out.stdout
        );
    }

    // Her topics: produced and read back byte for byte, by the Java client.
    let out = carol.produce(&ours, 0..N, &["--partition", "0"]);
    assert_eq!(
        acknowledged(&out).len() as u64,
        N,
        "carol's acknowledgements"
    );
    let out = carol.consume(&ours, &format!("{prefix}-g"), N, &[]);
    let got = parse_consumed_lines(&out.stdout);
    assert_records_exact(&got, 0..N);
    assert_each_at_its_index(&got);
    // Deleting her group's offsets takes DELETE on the group, which READ does not give; the
    // super user may.
    let group_offsets = [
        "delete-group-offsets",
        "--group",
        &format!("{prefix}-g"),
        "--topic",
        &ours,
        "--partitions",
        "0",
    ];
    let err = carol.admin_fails(&group_offsets);
    assert!(err.contains("GroupAuthorizationException"), "{err}");
    alice.admin(&group_offsets);

    // Another topic (alice's): carol may neither write nor read it.
    let other = topic_name("not-carols");
    alice.produce(&other, 0..N, &["--partition", "0"]);
    let err = carol.produce_fails(&other, N..N + 1, &[]);
    assert!(err.contains("TopicAuthorizationException"), "{err}");
    let err = carol.consume_fails(
        &other,
        &format!("{prefix}-other"),
        1,
        &["--timeout-ms", "20000"],
    );
    assert!(err.contains("TopicAuthorizationException"), "{err}");
    let alice_rd = scram_over_tls(USER, PASSWORD, &ca);
    assert_eq!(rd_watermarks_with(&bs, &other, &alice_rd), (0, N as i64));
    assert_eq!(rd_watermarks_with(&bs, &ours, &alice_rd), (0, N as i64));

    // Transactions take WRITE on the transactional id: refused (fatally, nothing written)
    // until kafka-acls.sh grants it on her prefix, then committed and read back
    // (read_committed) in her group.
    let txn_topic = format!("{prefix}-txn");
    alice.admin(&["create-topic", "--topic", &txn_topic]);
    let txn_id = format!("transactional.id={prefix}-producer");
    let err = carol.produce_fails(&txn_topic, 0..1, &["--prop", &txn_id]);
    assert!(
        err.contains("TransactionalIdAuthorizationException"),
        "{err}"
    );
    tool(
        ACL_COMMAND,
        &[
            "--add",
            "--allow-principal",
            "User:carol",
            "--operation",
            "Write",
            "--transactional-id",
            &prefix,
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    let out = carol.produce(&txn_topic, 0..N, &["--partition", "0", "--prop", &txn_id]);
    assert_eq!(acknowledged(&out).len() as u64, N);
    let out = carol.consume(
        &txn_topic,
        &format!("{prefix}-txn-readers"),
        N,
        &["--prop", "isolation.level=read_committed"],
    );
    assert_records_exact(&parse_consumed_lines(&out.stdout), 0..N);
    assert_eq!(
        rd_watermarks_with(&bs, &txn_topic, &alice_rd).1,
        N as i64 + 1,
        "N records and the COMMIT marker"
    );
}

/// Debian's kcat (librdkafka 2.0.2) turns SASL on only when the broker's SaslHandshake range
/// includes v0 (then sends v1): with PLAIN over TLS it produces and reads back. (Its SCRAM
/// client repeats the client nonce in the final message, a librdkafka bug fixed in 2.6.1, which
/// Sluice, like Kafka 4, refuses.)
#[test]
fn kcat_with_librdkafka_2_0_2_authenticates_with_plain_over_tls() {
    python(); // scripts/clients.sh installs kcat
    let kcat = std::env::var("SLUICE_KCAT").unwrap_or_else(|_| "kcat".into());
    let files = tempfile::tempdir().expect("temp dir");
    let users = users_file(files.path());
    let (ca, cert, key) = certificates(files.path());
    let broker = SecureBroker::start(&[
        "--listeners",
        "SASL_SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
        "--inter-broker-listener-name",
        "PLAINTEXT",
        "--sasl-enabled-mechanisms",
        "PLAIN,SCRAM-SHA-512",
        "--sasl-users-file",
        &users,
        "--ssl-certificate-file",
        &cert,
        "--ssl-key-file",
        &key,
    ]);
    let bs = broker.bootstrap("SASL_SSL");
    let topic = topic_name("kcat-plain");
    let user = format!("sasl.username={USER}");
    let password = format!("sasl.password={PASSWORD}");
    let ca_location = format!("ssl.ca.location={ca}");
    let kcat_cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(&kcat);
        c.args(["-b", &bs, "-t", &topic, "-X", "security.protocol=SASL_SSL"]);
        c.args(["-X", "sasl.mechanisms=PLAIN", "-X", &user, "-X", &password]);
        c.args(["-X", &ca_location]);
        c.args(args);
        c
    };
    let lines: Vec<String> = (0..20).map(|i| format!("kcat-plain-{i}")).collect();
    let input = files.path().join("in.txt");
    std::fs::write(&input, lines.join("\n") + "\n").expect("write kcat input");
    let mut produce = kcat_cmd(&["-P", "-p", "0", "-l"]);
    produce.arg(&input);
    run_bounded(produce, "kcat -P over SASL_SSL", LONG);
    let consume = kcat_cmd(&["-C", "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%s\n"]);
    let out = run_bounded(consume, "kcat -C over SASL_SSL", LONG);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        lines,
        "kcat read back different records"
    );
    assert!(broker.metric("sluice_sasl_authentications_total", "PLAIN") >= 2.0);
}

/// A librdkafka member of `group` with group.protocol=consumer, as `settings`' user,
/// subscribed to `subscription` (a name, or a regular expression starting with `^`).
fn rd_group_member(
    bs: &str,
    group: &str,
    subscription: &str,
    settings: &[(&'static str, String)],
) -> rdkafka::consumer::BaseConsumer {
    let mut cfg = rdkafka::config::ClientConfig::new();
    cfg.set("bootstrap.servers", bs)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("broker.address.family", "v4")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in settings {
        cfg.set(*k, v);
    }
    rd_debug(&mut cfg);
    let c: rdkafka::consumer::BaseConsumer = cfg.create().expect("create librdkafka member");
    c.subscribe(&[subscription]).expect("subscribe");
    c
}

/// The (topic, partition) pairs `c` owns.
fn rd_owned(c: &rdkafka::consumer::BaseConsumer) -> std::collections::BTreeSet<(String, i32)> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// KIP-848 consumer groups under the ACL authorizer (Kafka's KAFKA-18813 rules): a member's
/// regular expression resolves only to the topics that member may DESCRIBE, whatever another
/// member of the group may see; a heartbeat naming a topic the member may not DESCRIBE is
/// refused (TOPIC_AUTHORIZATION_FAILED) and the member never joins; ConsumerGroupDescribe of a
/// group assigned a topic the caller may not DESCRIBE is refused. librdkafka members, the Java
/// AdminClient describing, kafka-acls.sh granting.
#[test]
fn consumer_protocol_members_are_given_and_shown_only_the_topics_they_may_describe() {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::Message;

    let files = tempfile::tempdir().expect("temp dir");
    let (broker, ca) = acl_broker(files.path(), "SASL_SSL");
    let bs = broker.bootstrap("SASL_SSL");
    let ca_pem = std::fs::read_to_string(&ca).expect("read the CA certificate");
    let tool = admin_tool(files.path(), &bs, &ca);
    let alice = JavaDriver::sasl_ssl_scram_sha_512(&bs, USER, PASSWORD, &ca_pem);
    let bob_java = JavaDriver::sasl_ssl_scram_sha_512(&bs, "bob", "bob-secret", &ca_pem);
    let prefix = topic_name("cg-acl");
    let (mine, secret) = (format!("{prefix}-mine"), format!("{prefix}-secret"));
    for t in [&mine, &secret] {
        alice.admin(&["create-topic", "--topic", t, "--partitions", "2"]);
        alice.produce(t, 0..N, &["--partition", "0"]);
    }
    // bob may READ (so DESCRIBE) `mine` and the groups under the prefix; `secret` is alice's.
    tool(
        ACL_COMMAND,
        &[
            "--add",
            "--allow-principal",
            "User:bob",
            "--operation",
            "Read",
            "--topic",
            &mine,
        ],
    );
    tool(
        ACL_COMMAND,
        &[
            "--add",
            "--allow-principal",
            "User:bob",
            "--operation",
            "Read",
            "--group",
            &prefix,
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    let (alice_rd, bob_rd) = (
        scram_over_tls(USER, PASSWORD, &ca),
        scram_over_tls("bob", "bob-secret", &ca),
    );
    let group = format!("{prefix}-g");
    let regex = format!("^{prefix}-.*");
    let part = |t: &str, p: i32| (t.to_string(), p);
    let mine_all: std::collections::BTreeSet<_> = (0..2).map(|p| part(&mine, p)).collect();
    let secret_all: std::collections::BTreeSet<_> = (0..2).map(|p| part(&secret, p)).collect();
    // Polls `c` (what it reads, counted) and checks it never owns one of `secret`'s partitions.
    let poll = |c: &BaseConsumer, who: &str, read: &mut u64| {
        while let Some(r) = c.poll(Duration::from_millis(100)) {
            let m = r.unwrap_or_else(|e| panic!("{who}: consumer error: {e}"));
            assert_eq!(
                m.topic(),
                mine.as_str(),
                "{who} read a record of {}",
                m.topic()
            );
            *read += 1;
        }
        let owned = rd_owned(c);
        assert!(
            owned.is_disjoint(&secret_all),
            "{who} was assigned a partition of a topic it may not describe: {owned:?}"
        );
        owned
    };

    // Alone, bob's expression matches both topics but resolves only to `mine`: he owns its
    // partitions and reads its records.
    let bob = rd_group_member(&bs, &group, &regex, &bob_rd);
    let mut bob_read = 0;
    wait_for(
        "bob to own every partition of the topic he may see and read its records",
        LONG,
        Duration::from_millis(1),
        || (poll(&bob, "bob", &mut bob_read) == mine_all && bob_read == N).then_some(()),
    );
    // As the coordinator has it: bob's assignment and target are `mine`'s two partitions (with
    // `secret`'s too, he would hold four, which his client could not even resolve).
    let out = alice.admin(&["describe-group", "--group", &group]);
    let members = tagged(&out, "member");
    assert_eq!(members.len(), 1, "{}", out.stdout);
    assert!(
        members[0].ends_with(" assigned 0,1 target 0,1"),
        "{members:?}"
    );
    // alice joins with the same expression: `secret` is hers alone.
    let alice_member = rd_group_member(&bs, &group, &regex, &alice_rd);
    wait_for(
        "alice to own every partition of the secret topic",
        LONG,
        Duration::from_millis(1),
        || {
            let _ = poll(&bob, "bob", &mut bob_read);
            let owned = rd_owned(&alice_member);
            while let Some(r) = alice_member.poll(Duration::ZERO) {
                r.unwrap_or_else(|e| panic!("alice: consumer error: {e}"));
            }
            owned.is_superset(&secret_all).then_some(())
        },
    );

    // Describing the group names `secret` (alice's assignment): refused to bob, shown to alice.
    let err = bob_java.admin_fails(&["describe-group", "--group", &group]);
    assert!(err.contains("TopicAuthorizationException"), "{err}");
    let out = alice.admin(&["describe-group", "--group", &group]);
    assert!(
        out.stdout.contains(" members 2 "),
        "alice sees both members: {}",
        out.stdout
    );
    // Group configs take DESCRIBE_CONFIGS on the group, which READ does not give.
    let describe_configs = ["describe-configs", "--type", "GROUP", "--name", &group];
    let err = bob_java.admin_fails(&describe_configs);
    assert!(err.contains("GroupAuthorizationException"), "{err}");
    let out = alice.admin(&describe_configs);
    assert!(
        out.stdout
            .contains("#config consumer.session.timeout.ms=45000 source DEFAULT_CONFIG"),
        "{}",
        out.stdout
    );
    drop(alice_member);
    drop(bob);

    // bob subscribing to `secret` by name: his heartbeat is refused, he never joins.
    let named = format!("{prefix}-named");
    let bob = rd_group_member(&bs, &named, &secret, &bob_rd);
    let refused = wait_for(
        "bob's member to report the refused subscription",
        LONG,
        Duration::from_millis(1),
        || match bob.poll(Duration::from_millis(100)) {
            Some(Err(KafkaError::MessageConsumption(code))) => Some(code),
            Some(Err(e)) => panic!("bob: unexpected error {e}"),
            Some(Ok(m)) => panic!("bob read a record of {}", m.topic()),
            None => None,
        },
    );
    assert_eq!(refused, RDKafkaErrorCode::TopicAuthorizationFailed);
    assert!(
        rd_owned(&bob).is_empty(),
        "bob was assigned {:?}",
        rd_owned(&bob)
    );
    // The group has no member: the AdminClient finds no such group (or an empty one).
    let (described, out) = alice.try_admin(&["describe-group", "--group", &named]);
    assert!(
        if described {
            out.stdout.contains(" members 0 ")
        } else {
            out.stderr.contains("GroupIdNotFoundException")
        },
        "the refused member never joined: {} {}",
        out.stdout,
        out.stderr
    );
}
