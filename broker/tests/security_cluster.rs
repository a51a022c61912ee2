//! Security beyond one connection: a certificate rotated under a producer's load is served to
//! new connections with no delivery error; three brokers with mutual TLS between them (the
//! inter-broker listener and the quorum port) replicate a topic with three copies while
//! librdkafka (SCRAM-SHA-512) and confluent-kafka's Python client (SCRAM-SHA-256) produce and
//! consume over SASL_SSL; a plaintext peer on the quorum port gets nothing.
//!
//! The brokers are the real binary; certificates are made at test time with rcgen.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::Offset;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
const APP: &str = "app";
const APP_PASSWORD: &str = "app-secret";

struct Ca {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "security-cluster test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { key, cert }
    }

    /// A certificate for `names` (DNS names or IP addresses) with both usages, as every broker
    /// of a cluster shares one (the operator's way: one subject, so the ACL authorizer knows
    /// every broker as the same principal). Returns (certificate PEM, key PEM, DER).
    fn issue(&self, names: &[String], cn: &str) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(names.to_vec()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Writes `text` to `name` by rename, as a Secret volume's symlink swap replaces files.
    fn put(&self, name: &str, text: &str) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.dir.join(name)).expect("rename");
    }
}

fn sasl_ssl(mechanism: &str, user: &str, password: &str, ca: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanism", mechanism.to_string()),
        ("sasl.username", user.to_string()),
        ("sasl.password", password.to_string()),
        ("ssl.ca.location", ca.to_string()),
    ]
}

fn borrowed<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

/// The certificate a new TLS connection to `addr` is served (DER), verified against `ca_pem`.
fn served_certificate(addr: &str, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = ServerName::try_from(host).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("TLS handshake");
    }
    conn.peer_certificates().expect("peer certificates")[0].to_vec()
}

#[test]
fn a_certificate_rotated_under_load_is_served_to_new_connections_without_a_producer_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let files = Files {
        dir: tmp.path().to_path_buf(),
    };
    let ca = Ca::new();
    files.put("ca.crt", &ca.cert.pem());
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let (cert1, key1, der1) = ca.issue(&names, "broker-old");
    files.put("tls.crt", &cert1);
    files.put("tls.key", &key1);
    files.put("users", &format!("{ADMIN}:{ADMIN_PASSWORD}\n"));
    let data = tmp.path().join("data").display().to_string();
    let args: Vec<String> = [
        "--data-dir",
        &data,
        "--http-listen",
        "127.0.0.1:0",
        "--listeners",
        "CLIENT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "--listener-security-protocol-map",
        "CLIENT:SASL_SSL,INTERNAL:SSL",
        "--inter-broker-listener-name",
        "INTERNAL",
        "--ssl-certificate-file",
        &files.path("tls.crt"),
        "--ssl-key-file",
        &files.path("tls.key"),
        "--ssl-ca-file",
        &files.path("ca.crt"),
        "--ssl-reload-interval-ms",
        "200",
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-512",
        "--sasl-users-file",
        &files.path("users"),
        "--log-format",
        "text",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let broker = BinaryBroker::spawn_args(&args, &tmp.path().join("broker.log"));
    let bootstrap = broker.bootstrap();
    assert_eq!(served_certificate(&bootstrap, &ca.cert.pem()), der1);

    let settings = sasl_ssl(
        "SCRAM-SHA-512",
        ADMIN,
        ADMIN_PASSWORD,
        &files.path("ca.crt"),
    );
    let producer = rd_producer(&bootstrap, &borrowed(&settings));
    let topic = topic_name("rotation");
    // A steady stream before, during and after the swap: a record every 2 ms from this
    // thread, while the check below runs on another.
    let swapped = Arc::new(AtomicBool::new(false));
    let watcher = {
        let swapped = Arc::clone(&swapped);
        let (bootstrap, ca_pem) = (bootstrap.clone(), ca.cert.pem());
        let (cert2, key2, der2) = ca.issue(&names, "broker-new");
        let files = Files {
            dir: files.dir.clone(),
        };
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            // Key first, then the certificate: in between the pair does not match and the
            // broker keeps serving the old one (it refuses a mismatched pair).
            files.put("tls.key", &key2);
            files.put("tls.crt", &cert2);
            wait_for(
                "new connections to be served the rotated certificate",
                Duration::from_secs(20),
                Duration::from_millis(50),
                || (served_certificate(&bootstrap, &ca_pem) == der2).then_some(()),
            );
            swapped.store(true, Ordering::SeqCst);
        })
    };
    let mut sent = 0u64;
    let mut after_swap = 0u64;
    while after_swap < 300 {
        rd_send(&producer, &topic, Some(0), sent);
        sent += 1;
        if swapped.load(Ordering::SeqCst) {
            after_swap += 1;
        }
        producer.poll(Duration::from_millis(2));
        assert!(sent < 20_000, "the rotated certificate was never seen");
    }
    watcher.join().expect("watcher thread");
    producer
        .flush(Duration::from_secs(30))
        .expect("flush the producer");
    let failed = producer.context().failed.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "delivery failures: {:?}",
        &failed[..failed.len().min(5)]
    );
    let acked = producer.context().acked.lock().expect("lock").len() as u64;
    assert_eq!(acked, sent, "every record acknowledged");

    // A new client (new connections, the new certificate) reads every record back.
    let reader = rd_reader(
        &bootstrap,
        &topic,
        &[0],
        Offset::Beginning,
        &borrowed(&settings),
    );
    let got = rd_poll_n(&reader, sent as usize, Duration::from_secs(60));
    assert_records_exact(&got, 0..sent);
    let log = strip_ansi(&broker.log());
    assert!(
        log.contains("TLS certificate files changed; new connections use them")
            && log.contains("broker-new"),
        "the broker says it took the new certificate:\n{log}"
    );
}

/// Broker `id`'s address on the test's own loopback network.
fn host(net: u8, id: i32) -> String {
    format!("127.0.{net}.{}", id + 1)
}

#[test]
fn three_brokers_with_mutual_tls_between_them_replicate_for_scram_clients_over_sasl_ssl() {
    const NET: u8 = 61;
    let tmp = tempfile::tempdir().expect("tmp");
    let files = Files {
        dir: tmp.path().to_path_buf(),
    };
    let ca = Ca::new();
    files.put("ca.crt", &ca.cert.pem());
    let names: Vec<String> = (0..3).map(|id| host(NET, id)).collect();
    let (cert, key, _) = ca.issue(&names, "sluice-brokers");
    files.put("tls.crt", &cert);
    files.put("tls.key", &key);
    files.put(
        "users",
        &format!("{ADMIN}:{ADMIN_PASSWORD}\n{APP}:{APP_PASSWORD}\n"),
    );
    let quorum = |id: i32| format!("{}:9093", host(NET, id));
    let mut launched = Vec::new();
    for id in 0..3 {
        let h = host(NET, id);
        let mut args: Vec<String> = [
            "--node-id",
            &id.to_string(),
            "--data-dir",
            &tmp.path().join(format!("b{id}")).display().to_string(),
            "--http-listen",
            "127.0.0.1:0",
            "--listeners",
            &format!("CLIENT://{h}:9094,INTERNAL://{h}:9095"),
            "--listener-security-protocol-map",
            "CLIENT:SASL_SSL,INTERNAL:SSL",
            "--listener-ssl-client-auth",
            "INTERNAL:required",
            "--inter-broker-listener-name",
            "INTERNAL",
            "--cluster-listen",
            &quorum(id),
            "--cluster-security-protocol",
            "ssl",
            "--ssl-certificate-file",
            &files.path("tls.crt"),
            "--ssl-key-file",
            &files.path("tls.key"),
            "--ssl-ca-file",
            &files.path("ca.crt"),
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-512,SCRAM-SHA-256",
            "--sasl-users-file",
            &files.path("users"),
            "--default-replication-factor",
            "3",
            "--min-insync-replicas",
            "2",
            "--log-format",
            "text",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if id > 0 {
            args.extend(["--seeds".to_string(), quorum(0)]);
        }
        let log = tmp.path().join(format!("b{id}.log"));
        launched.push(BinaryBroker::launch(&args, &log));
    }
    let brokers: Vec<BinaryBroker> = launched.into_iter().map(|l| l.ready()).collect();
    let bootstrap = brokers
        .iter()
        .map(BinaryBroker::bootstrap)
        .collect::<Vec<_>>()
        .join(",");
    let ca_path = files.path("ca.crt");
    let admin = sasl_ssl("SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD, &ca_path);
    let admin = borrowed(&admin);

    // Every broker sees all three (the quorum formed over mutual TLS).
    wait_for(
        "three brokers in the metadata",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let md = rd_consumer(&bootstrap, &admin)
                .fetch_metadata(None, Duration::from_secs(5))
                .ok()?;
            (md.brokers().len() == 3).then_some(())
        },
    );

    // librdkafka, SCRAM-SHA-512, acks=all to a topic with three copies: every copy is written
    // over the SSL inter-broker listener.
    let topic = topic_name("mtls");
    let acked = rd_produce_all(&bootstrap, &topic, Some(0), 0..200, &admin);
    assert_eq!(acked.len(), 200);
    let isr = wait_for(
        "three in-sync replicas",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let md = rd_consumer(&bootstrap, &admin)
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .ok()?;
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            let p = t.partitions().iter().find(|p| p.id() == 0)?;
            (p.replicas().len() == 3 && p.isr().len() == 3).then(|| p.isr().to_vec())
        },
    );
    assert_eq!(isr.len(), 3);
    let reader = rd_reader(&bootstrap, &topic, &[0], Offset::Beginning, &admin);
    let got = rd_poll_n(&reader, 200, Duration::from_secs(60));
    assert_records_exact(&got, 0..200);

    // confluent-kafka (a newer librdkafka) as another user with SCRAM-SHA-256.
    let py_conf = [
        "--config".to_string(),
        "security.protocol=SASL_SSL".to_string(),
        "--config".to_string(),
        "sasl.mechanism=SCRAM-SHA-256".to_string(),
        "--config".to_string(),
        format!("sasl.username={APP}"),
        "--config".to_string(),
        format!("sasl.password={APP_PASSWORD}"),
        "--config".to_string(),
        format!("ssl.ca.location={ca_path}"),
    ];
    let py_conf: Vec<&str> = py_conf.iter().map(String::as_str).collect();
    let py_topic = topic_name("mtls-py");
    let mut produce_args = vec!["--partition", "0"];
    produce_args.extend(&py_conf);
    // Both helpers panic with the client's output unless it exits 0 in time.
    py_produce(
        "confluent_client.py",
        &bootstrap,
        &py_topic,
        0..100,
        &produce_args,
    );
    let mut consume_args = vec![
        "consume",
        "--bootstrap",
        &bootstrap,
        "--topic",
        &py_topic,
        "--count",
        "100",
        "--partitions",
        "0",
    ];
    consume_args.extend(&py_conf);
    let out = run_python(
        "confluent_client.py",
        &consume_args,
        Duration::from_secs(60),
    );
    assert_records_exact(&parse_consumed_lines(&out.stdout), 0..100);

    // A wrong password is refused by every broker of the cluster.
    let wrong = sasl_ssl("SCRAM-SHA-256", APP, "not-it", &ca_path);
    let err = rd_consumer(&bootstrap, &borrowed(&wrong))
        .fetch_metadata(None, Duration::from_secs(5))
        .expect_err("a wrong password gets no metadata");
    assert!(!err.to_string().is_empty());

    // Kafka's own tool over SASL_SSL sets a group config: the broker it reaches first asks
    // the other two, over the mutual-TLS quorum port, whether they can read such an entry.
    files.put(
        "admin.properties",
        &format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"{ADMIN}\" password=\"{ADMIN_PASSWORD}\";\n\
             ssl.truststore.type=PEM\nssl.truststore.location={ca_path}\n"
        ),
    );
    let props = files.path("admin.properties");
    let configs = |args: &[&str]| {
        kafka_configs(
            &bootstrap,
            &[&["--command-config", props.as_str()][..], args].concat(),
        )
    };
    let group = ["--entity-type", "groups", "--entity-name", "mtls-group"];
    let (ok, said) = configs(
        &[
            &["--alter"][..],
            &group,
            &["--add-config", "consumer.session.timeout.ms=50000"],
        ]
        .concat(),
    );
    assert!(ok, "setting a group config: {said}");
    let (ok, said) = configs(&[&["--describe"][..], &group].concat());
    assert!(
        ok && said.contains("consumer.session.timeout.ms=50000"),
        "{said}"
    );

    // A plaintext peer on the quorum port is not a member: it gets no cluster message back.
    let mut plain = TcpStream::connect(quorum(1)).expect("connect to the quorum port");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = plain.write_all(b"{\"join\":\"plaintext\"}\n");
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15 || buf[0] == 0x16,
        "a plaintext peer got a non-TLS answer: {:?}",
        &buf[..n]
    );
    drop(brokers);
}
