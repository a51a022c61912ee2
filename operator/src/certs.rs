//! The certificates and passwords the operator makes: a CA per MessageQueue, the brokers'
//! certificate signed by it, the decision when to renew that certificate, and random passwords.
//!
//! Pure apart from the system clock and random source handed in or read here; the Secrets that
//! hold the results are built in `security` and written by `reconcile`. Nothing here ever puts
//! key material into an error message.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use ring::rand::SecureRandom;

use crate::error::{Error, Result};

/// How long a generated CA is valid. It is not renewed by the operator: ten years outlive any
/// cluster this version manages, and a new CA would have to reach every client first.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a generated broker certificate is valid.
pub const BROKER_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// A broker certificate is renewed when less than this is left: well before expiry, so a
/// failing operator has weeks to be noticed.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Annotation on a generated certificate Secret: its expiry, in seconds since the epoch.
pub const NOT_AFTER_ANNOTATION: &str = "sluice.dev/not-after";
/// Annotation on a generated certificate Secret: [`fingerprint`] of the names and CA it was
/// issued for, so a new CA or a changed name reissues it.
pub const ISSUED_FOR_ANNOTATION: &str = "sluice.dev/issued-for";

/// A PEM certificate and its PEM private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("cert_pem", &self.cert_pem.len())
            .field("key_pem", &"<hidden>")
            .finish()
    }
}

fn cert_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Certificate {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn ca_params(common_name: &str, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sluice");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + CA_VALIDITY).into();
    params
}

/// A new self-signed CA named `common_name`, valid for [`CA_VALIDITY`] from `now`.
pub fn generate_ca(common_name: &str, now: SystemTime) -> Result<CertPair> {
    let what = format!("CA {common_name}");
    let key = KeyPair::generate().map_err(|e| cert_error(&what, e))?;
    let cert = ca_params(common_name, now)
        .self_signed(&key)
        .map_err(|e| cert_error(&what, e))?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `dns_names` (the first is its common name) signed by the CA `ca` named
/// `ca_common_name` (as [`generate_ca`] made it), valid for [`BROKER_CERT_VALIDITY`] from `now`,
/// for both TLS servers and clients: brokers present it to clients and to each other.
///
/// rcgen cannot read a certificate back without another parser, so the issuer is rebuilt from
/// its name and key: the signature, the issuer name and the authority key identifier (derived
/// from the key) are what a verifier checks, and all three come out the same.
pub fn issue_certificate(
    ca: &CertPair,
    ca_common_name: &str,
    dns_names: &[String],
    now: SystemTime,
) -> Result<CertPair> {
    let what = format!(
        "for {}",
        dns_names.first().map(String::as_str).unwrap_or("?")
    );
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| cert_error(&what, e))?;
    let issuer = ca_params(ca_common_name, now)
        .self_signed(&ca_key)
        .map_err(|e| cert_error(&what, e))?;
    let mut params =
        CertificateParams::new(dns_names.to_vec()).map_err(|e| cert_error(&what, e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sluice");
    if let Some(first) = dns_names.first() {
        dn.push(DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + BROKER_CERT_VALIDITY).into();
    let key = KeyPair::generate().map_err(|e| cert_error(&what, e))?;
    let cert = params
        .signed_by(&key, &issuer, &ca_key)
        .map_err(|e| cert_error(&what, e))?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A short digest of what a certificate was issued for: its names and the CA certificate.
pub fn fingerprint(dns_names: &[String], ca_cert_pem: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for name in dns_names {
        ctx.update(name.as_bytes());
        ctx.update(b"\n");
    }
    ctx.update(ca_cert_pem.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The annotations a freshly issued certificate's Secret carries.
pub fn issued_annotations(issued_for: &str, now: SystemTime) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            NOT_AFTER_ANNOTATION.to_string(),
            unix_seconds(now + BROKER_CERT_VALIDITY).to_string(),
        ),
        (ISSUED_FOR_ANNOTATION.to_string(), issued_for.to_string()),
    ])
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Why a generated certificate must be issued anew, or None to keep it. `annotations` are
/// those of the existing Secret (None: there is none), `issued_for` the current [`fingerprint`].
pub fn renewal_reason(
    annotations: Option<&BTreeMap<String, String>>,
    has_material: bool,
    issued_for: &str,
    now: SystemTime,
) -> Option<&'static str> {
    let Some(annotations) = annotations else {
        return Some("absent");
    };
    if !has_material {
        return Some("incomplete");
    }
    if annotations.get(ISSUED_FOR_ANNOTATION).map(String::as_str) != Some(issued_for) {
        return Some("names or CA changed");
    }
    let Some(not_after) = annotations
        .get(NOT_AFTER_ANNOTATION)
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Some("expiry unknown");
    };
    if not_after <= unix_seconds(now + RENEW_BEFORE) {
        return Some("expires soon");
    }
    None
}

/// A random password: 24 bytes from the system's secure random source, base64url (32
/// characters, no ':' so it fits the brokers' users file).
pub fn generate_password() -> Result<String> {
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| cert_error("password", "the system random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: u64) -> Duration {
        Duration::from_secs(n * 24 * 3600)
    }

    #[test]
    fn a_generated_ca_signs_a_server_and_client_certificate() {
        let now = SystemTime::now();
        let ca = generate_ca("sluice shop/orders CA", now).expect("ca");
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca.key_pem.contains("PRIVATE KEY"));
        let names = vec![
            "*.orders-brokers.shop.svc".to_string(),
            "orders.shop.svc".to_string(),
        ];
        let leaf = issue_certificate(&ca, "sluice shop/orders CA", &names, now).expect("leaf");
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(leaf.key_pem, ca.key_pem);
        assert!(
            !format!("{leaf:?}").contains("PRIVATE"),
            "Debug hides the key"
        );
    }

    /// The chain as rustls (the brokers' TLS, and librdkafka's rules for names) checks it: the
    /// leaf verifies against the CA for a pod's name under the wildcard, as a server and as a
    /// client, and not for a name it does not carry.
    #[test]
    fn the_issued_certificate_verifies_against_the_ca_as_server_and_client() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
        use std::sync::Arc;

        let now = SystemTime::now();
        let ca = generate_ca("sluice shop/orders CA", now).expect("ca");
        let names = vec![
            "*.orders-brokers.shop.svc.cluster.local".to_string(),
            "orders.shop.svc".to_string(),
        ];
        let leaf = issue_certificate(&ca, "sluice shop/orders CA", &names, now).expect("leaf");
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("ca pem");
        let leaf_der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("leaf pem");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).expect("root");
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .expect("server verifier");
        let at = UnixTime::now();
        let pod =
            ServerName::try_from("orders-0.orders-brokers.shop.svc.cluster.local").expect("name");
        server
            .verify_server_cert(&leaf_der, &[], &pod, &[], at)
            .expect("a pod name under the wildcard verifies");
        let bootstrap = ServerName::try_from("orders.shop.svc").expect("name");
        server
            .verify_server_cert(&leaf_der, &[], &bootstrap, &[], at)
            .expect("the bootstrap name verifies");
        let other = ServerName::try_from("orders.elsewhere.svc").expect("name");
        assert!(server
            .verify_server_cert(&leaf_der, &[], &other, &[], at)
            .is_err());
        let client = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .expect("client verifier");
        client
            .verify_client_cert(&leaf_der, &[], at)
            .expect("brokers present the same certificate to each other");
    }

    #[test]
    fn issuing_with_a_key_that_is_not_pem_fails_without_echoing_it() {
        let bad = CertPair {
            cert_pem: String::new(),
            key_pem: "secret-garbage".to_string(),
        };
        let err = issue_certificate(&bad, "ca", &["a.example".to_string()], SystemTime::now())
            .expect_err("refused")
            .to_string();
        assert!(!err.contains("secret-garbage"), "{err}");
    }

    #[test]
    fn renewal_follows_presence_names_and_expiry() {
        let now = SystemTime::now();
        let fresh = issued_annotations("abc", now);
        assert_eq!(renewal_reason(None, false, "abc", now), Some("absent"));
        assert_eq!(
            renewal_reason(Some(&fresh), false, "abc", now),
            Some("incomplete")
        );
        assert_eq!(renewal_reason(Some(&fresh), true, "abc", now), None);
        assert_eq!(
            renewal_reason(Some(&fresh), true, "def", now),
            Some("names or CA changed")
        );
        // 59 days later 31 are left: kept; 61 days later 29 are left: renewed
        assert_eq!(
            renewal_reason(Some(&fresh), true, "abc", now + day(59)),
            None
        );
        assert_eq!(
            renewal_reason(Some(&fresh), true, "abc", now + day(61)),
            Some("expires soon")
        );
        let mut garbled = fresh.clone();
        garbled.insert(NOT_AFTER_ANNOTATION.to_string(), "soon".to_string());
        assert_eq!(
            renewal_reason(Some(&garbled), true, "abc", now),
            Some("expiry unknown")
        );
    }

    #[test]
    fn fingerprints_differ_by_names_and_ca() {
        let a = fingerprint(&["x".to_string()], "ca1");
        assert_eq!(a.len(), 24);
        assert_eq!(a, fingerprint(&["x".to_string()], "ca1"));
        assert_ne!(a, fingerprint(&["y".to_string()], "ca1"));
        assert_ne!(a, fingerprint(&["x".to_string()], "ca2"));
    }

    #[test]
    fn passwords_are_random_and_fit_the_users_file() {
        let a = generate_password().expect("password");
        let b = generate_password().expect("password");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(!a.contains(':') && !a.contains('\n'));
    }
}
