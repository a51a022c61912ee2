//! The admin client against a secured `sluice-broker`: TLS verified against the cluster's CA,
//! SCRAM-SHA-512 / SCRAM-SHA-256 / PLAIN authentication, the ACL calls and the SCRAM user calls
//! the operator uses to keep declared users in place, and the refusals a wrong CA, a wrong server
//! name, a wrong password and a missing ACL get.
//!
//! Ignored by default because it runs the broker binary:
//! `SLUICE_BROKER_BIN=target/debug/sluice-broker cargo test -p sluice-operator --test secure_admin -- --ignored`
//! (`scripts/operator-admin-vs-sluice.sh` does so in the test command). Certificates are made at
//! test time with rcgen; no key is committed.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_operator::kafka::{
    acl_changes, AclBinding, AclOperation, AclPatternType, AclPermission, AclResourceType,
    AdminClient, ClientSecurity, SaslCredentials, SaslMechanism,
};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Broker {
    child: Child,
    addr: String,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn certificates(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "secure-admin-test-ca");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("broker key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "broker-0.test".to_string()])
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "broker-0");
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("broker cert");
    std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write key");
    std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write CA");
    ca.pem()
}

/// One broker with a SASL_SSL client listener (SCRAM both ways and PLAIN), an SSL inter-broker
/// listener, the ACL authorizer and `admin` as super user from a users file.
fn start_broker() -> Broker {
    let bin = std::env::var("SLUICE_BROKER_BIN")
        .expect("SLUICE_BROKER_BIN=path of a built sluice-broker");
    // A relative path is taken from the workspace root, where the test command runs.
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(bin);
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_pem = certificates(dir.path());
    std::fs::write(dir.path().join("users"), "admin:admin-secret\n").expect("users file");
    let p = |f: &str| dir.path().join(f).display().to_string();
    let mut child = Command::new(bin)
        // The broker refuses unknown SLUICE_* variables, such as this test's own.
        .env_clear()
        .args(["--data-dir", &p("data"), "--log-format", "text"])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--cluster-listen",
            "127.0.0.1:0",
        ])
        .args(["--listeners", "CLIENT://127.0.0.1:0,INTERNAL://127.0.0.1:0"])
        .args([
            "--listener-security-protocol-map",
            "CLIENT:SASL_SSL,INTERNAL:SSL",
        ])
        .args(["--listener-ssl-client-auth", "INTERNAL:required"])
        .args(["--inter-broker-listener-name", "INTERNAL"])
        .args([
            "--ssl-certificate-file",
            &p("tls.crt"),
            "--ssl-key-file",
            &p("tls.key"),
        ])
        .args(["--ssl-ca-file", &p("ca.crt")])
        .args([
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        ])
        .args(["--sasl-users-file", &p("users")])
        .args(["--authorizer", "acl", "--super-users", "User:admin"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sluice-broker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if let Some(rest) = line.split(" kafka=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the broker printed its Kafka address within 30 s");
    Broker {
        child,
        addr,
        ca_pem,
        _dir: dir,
    }
}

fn security(ca: &str, mechanism: SaslMechanism, user: &str, password: &str) -> ClientSecurity {
    ClientSecurity {
        tls_ca_pem: Some(ca.to_string()),
        sasl: Some(SaslCredentials {
            mechanism,
            username: user.to_string(),
            password: password.to_string(),
        }),
    }
}

fn topic_acl(principal: &str, name: &str, pattern: AclPatternType, op: AclOperation) -> AclBinding {
    AclBinding {
        resource_type: AclResourceType::Topic,
        resource_name: name.to_string(),
        pattern,
        principal: principal.to_string(),
        host: "*".to_string(),
        operation: op,
        permission: AclPermission::Allow,
    }
}

#[tokio::test]
#[ignore = "runs the broker binary: SLUICE_BROKER_BIN=target/debug/sluice-broker"]
async fn the_operator_manages_users_and_acls_over_tls_and_scram() {
    let broker = start_broker();
    let admin_security = security(
        &broker.ca_pem,
        SaslMechanism::ScramSha512,
        "admin",
        "admin-secret",
    );
    let mut admin =
        AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &admin_security)
            .await
            .expect("admin connects with TLS and SCRAM-SHA-512");
    let metadata = admin.metadata().await.expect("metadata as admin");
    assert!(
        !metadata.brokers.is_empty(),
        "an authenticated admin sees the broker"
    );

    // A user, its credential and a prefixed ACL.
    admin
        .upsert_scram_user("app", SaslMechanism::ScramSha512, "app-secret-1")
        .await
        .expect("upsert app");
    let users = admin.describe_scram_users().await.expect("describe users");
    assert!(
        users
            .iter()
            .any(|(u, m)| u == "app" && m.contains(&SaslMechanism::ScramSha512)),
        "{users:?}"
    );
    let desired = vec![
        topic_acl(
            "User:app",
            "orders.",
            AclPatternType::Prefixed,
            AclOperation::Read,
        ),
        topic_acl(
            "User:app",
            "orders.",
            AclPatternType::Prefixed,
            AclOperation::Write,
        ),
    ];
    let managed = BTreeSet::from(["User:app".to_string()]);
    let present = admin.describe_acls().await.expect("describe ACLs");
    let (create, delete) = acl_changes(&desired, &present, &managed);
    assert_eq!(create.len(), 2);
    assert!(delete.is_empty());
    admin.create_acls(&create).await.expect("create ACLs");
    let present = admin.describe_acls().await.expect("describe ACLs again");
    let (create, delete) = acl_changes(&desired, &present, &managed);
    assert!(
        create.is_empty() && delete.is_empty(),
        "in place: {present:?}"
    );

    // The user authenticates with the mechanism it has a credential for, and only that one.
    let app = security(
        &broker.ca_pem,
        SaslMechanism::ScramSha512,
        "app",
        "app-secret-1",
    );
    let mut app_client = AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &app)
        .await
        .expect("app connects");
    app_client.metadata().await.expect("metadata as app");
    let sha256 = security(
        &broker.ca_pem,
        SaslMechanism::ScramSha256,
        "app",
        "app-secret-1",
    );
    let err = AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &sha256)
        .await
        .expect_err("no SCRAM-SHA-256 credential for app");
    assert!(err.to_string().contains("SaslAuthenticate"), "{err}");
    // PLAIN over TLS checks the same stored credential.
    let plain = security(&broker.ca_pem, SaslMechanism::Plain, "app", "app-secret-1");
    AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &plain)
        .await
        .expect("PLAIN over TLS");

    // The app user may not manage ACLs (no ALTER on the cluster): refused, named.
    let err = app_client
        .create_acls(&[topic_acl(
            "User:app",
            "x",
            AclPatternType::Literal,
            AclOperation::Read,
        )])
        .await
        .expect_err("app may not create ACLs");
    assert!(err.to_string().to_lowercase().contains("authoriz"), "{err}");

    // Rotation: a new password replaces the old one.
    admin
        .upsert_scram_user("app", SaslMechanism::ScramSha512, "app-secret-2")
        .await
        .expect("rotate");
    let err = AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &app)
        .await
        .expect_err("the old password is refused after rotation");
    assert!(err.to_string().contains("SaslAuthenticate"), "{err}");
    let rotated = security(
        &broker.ca_pem,
        SaslMechanism::ScramSha512,
        "app",
        "app-secret-2",
    );
    AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &rotated)
        .await
        .expect("the new password works");

    // Removal: ACLs and credential go; deleting again is not an error.
    let (_, delete) = acl_changes(&[], &admin.describe_acls().await.expect("acls"), &managed);
    assert_eq!(delete.len(), 2);
    admin.delete_acls(&delete).await.expect("delete ACLs");
    assert!(admin.describe_acls().await.expect("acls").is_empty());
    admin
        .delete_scram_user("app", SaslMechanism::ScramSha512)
        .await
        .expect("delete app");
    admin
        .delete_scram_user("app", SaslMechanism::ScramSha512)
        .await
        .expect("deleting a deleted user is not an error");
    AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &rotated)
        .await
        .expect_err("a deleted user is refused");
}

#[tokio::test]
#[ignore = "runs the broker binary: SLUICE_BROKER_BIN=target/debug/sluice-broker"]
async fn wrong_ca_wrong_name_wrong_password_and_plaintext_are_refused_with_reasons() {
    let broker = start_broker();
    let good = security(
        &broker.ca_pem,
        SaslMechanism::ScramSha512,
        "admin",
        "admin-secret",
    );

    let other_dir = tempfile::tempdir().expect("dir");
    let other_ca = certificates(other_dir.path());
    let wrong_ca = security(
        &other_ca,
        SaslMechanism::ScramSha512,
        "admin",
        "admin-secret",
    );
    let err = AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &wrong_ca)
        .await
        .expect_err("a certificate from another CA is refused");
    assert!(err.to_string().contains("TLS handshake"), "{err}");

    let err = AdminClient::connect_secure(&broker.addr, "other.example", TIMEOUT, &good)
        .await
        .expect_err("a name the certificate does not carry is refused");
    assert!(err.to_string().contains("TLS handshake"), "{err}");

    let bad = security(&broker.ca_pem, SaslMechanism::ScramSha512, "admin", "wrong");
    let err = AdminClient::connect_secure(&broker.addr, "localhost", TIMEOUT, &bad)
        .await
        .expect_err("a wrong password is refused");
    assert!(err.to_string().contains("SaslAuthenticate"), "{err}");

    // Plaintext to a TLS listener: no Kafka answer (the broker closes it), named, bounded.
    let err = AdminClient::connect(&broker.addr, Duration::from_secs(5))
        .await
        .expect_err("plaintext to a SASL_SSL listener");
    assert!(err.to_string().contains("ApiVersions"), "{err}");

    // The right name from the certificate's second SAN works, as the operator's pod DNS names do.
    AdminClient::connect_secure(&broker.addr, "broker-0.test", TIMEOUT, &good)
        .await
        .expect("second SAN");
}
