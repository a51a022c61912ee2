//! How the admin client reaches a secured broker: TLS verified against the cluster's CA, then
//! SASL (SCRAM-SHA-256/512 or PLAIN) with the operator's own user.
//!
//! The SCRAM client side (RFC 5802) lives here rather than in a shared crate because the operator
//! and the broker meet only at the wire (PRODUCT.md section 2); it is pure (messages in, messages
//! out) and unit-tested against RFC 7677's vector. The salted password for
//! AlterUserScramCredentials is computed here too, so a user's password never reaches a broker.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use rustls::client::ClientConfig;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// What a connection to a broker needs beyond TCP. The default is plaintext without SASL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSecurity {
    /// PEM CA certificates that sign the brokers' certificates: `Some` connects with TLS.
    pub tls_ca_pem: Option<String>,
    /// Credentials to authenticate with after connecting: `Some` runs SASL.
    pub sasl: Option<SaslCredentials>,
}

/// A SASL user. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A SASL mechanism the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SaslMechanism {
    ScramSha256,
    ScramSha512,
    Plain,
}

impl SaslMechanism {
    /// The name SaslHandshake and client configurations use.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism code of DescribeUserScramCredentials / AlterUserScramCredentials
    /// (`None` for PLAIN, which has no credential of its own).
    pub fn scram_code(self) -> Option<i8> {
        match self {
            SaslMechanism::ScramSha256 => Some(1),
            SaslMechanism::ScramSha512 => Some(2),
            SaslMechanism::Plain => None,
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            SaslMechanism::ScramSha256 | SaslMechanism::Plain => hmac::HMAC_SHA256,
            SaslMechanism::ScramSha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            SaslMechanism::ScramSha256 | SaslMechanism::Plain => &digest::SHA256,
            SaslMechanism::ScramSha512 => &digest::SHA512,
        }
    }

    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            SaslMechanism::ScramSha256 | SaslMechanism::Plain => pbkdf2::PBKDF2_HMAC_SHA256,
            SaslMechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
}

/// Builds the TLS client configuration from PEM CA text. No client certificate: the operator
/// authenticates with SASL (or not at all), never as a broker.
pub fn tls_config(ca_pem: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let mut found = 0usize;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("CA certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate {}: {e}", found + 1))?;
        found += 1;
    }
    if found == 0 {
        return Err("the CA text holds no PEM certificate".to_string());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn hmac_of(m: SaslMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(m.hmac_alg(), key), data)
        .as_ref()
        .to_vec()
}

/// `Hi(password, salt, iterations)` of RFC 5802: what AlterUserScramCredentials carries.
pub fn salted_password(m: SaslMechanism, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; m.digest_alg().output_len()];
    let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(m.pbkdf2_alg(), rounds, salt, password.as_bytes(), &mut out);
    out
}

/// `n` random bytes (salts and nonces).
pub fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    use ring::rand::SecureRandom;
    let mut out = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| "the operating system's random source failed".to_string())?;
    Ok(out)
}

/// PLAIN's single message: authorization id (empty), user, password, NUL-separated.
pub fn plain_message(username: &str, password: &str) -> Vec<u8> {
    format!("\0{username}\0{password}").into_bytes()
}

/// Why a SCRAM exchange failed on the client's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramClientError {
    #[error("the broker's {message} is malformed: {reason}")]
    Malformed {
        message: &'static str,
        reason: &'static str,
    },
    #[error("the broker's nonce does not extend ours")]
    NonceMismatch,
    #[error("the broker proved no knowledge of the password (server signature mismatch)")]
    BadServerSignature,
    #[error("the broker refused: {0}")]
    Refused(String),
}

fn malformed(message: &'static str, reason: &'static str) -> ScramClientError {
    ScramClientError::Malformed { message, reason }
}

/// One SCRAM exchange seen from the client: `first()`, then `answer(server_first)`, then
/// `check(server_final)`.
pub struct ScramClient {
    mechanism: SaslMechanism,
    password: String,
    bare: String,
    nonce: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("bare", &self.bare)
            .finish_non_exhaustive()
    }
}

/// RFC 5802 escapes `=` and `,` in names.
fn escape(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// Starts an exchange with `nonce` (printable, no commas: a random base64 text in use).
    pub fn new(mechanism: SaslMechanism, username: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            mechanism,
            password: password.to_string(),
            bare: format!("n={},r={nonce}", escape(username)),
            nonce: nonce.to_string(),
            expected_server_signature: None,
        }
    }

    /// `client-first-message` (no channel binding, no authorization id).
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.bare).into_bytes()
    }

    /// `client-final-message` for the broker's `server-first-message`.
    pub fn answer(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramClientError> {
        const MSG: &str = "server-first-message";
        let text = std::str::from_utf8(server_first).map_err(|_| malformed(MSG, "not UTF-8"))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramClientError::Refused(e.to_string()));
        }
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in text.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(malformed(MSG, "expected r=, s= and i="));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramClientError::NonceMismatch);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| malformed(MSG, "the salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|i| (1..=1_000_000).contains(i))
            .ok_or_else(|| malformed(MSG, "the iteration count is not a number in 1..=1000000"))?;
        let m = self.mechanism;
        let salted = salted_password(m, &self.password, &salt, iterations);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{text},{without_proof}", self.bare);
        let client_key = hmac_of(m, &salted, b"Client Key");
        let stored_key = digest::digest(m.digest_alg(), &client_key);
        let signature = hmac_of(m, stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac_of(m, &salted, b"Server Key");
        self.expected_server_signature = Some(hmac_of(m, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the broker's `server-final-message`: the broker must know the password too.
    pub fn check(&self, server_final: &[u8]) -> Result<(), ScramClientError> {
        const MSG: &str = "server-final-message";
        let text = std::str::from_utf8(server_final).map_err(|_| malformed(MSG, "not UTF-8"))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramClientError::Refused(e.to_string()));
        }
        let v = text
            .strip_prefix("v=")
            .ok_or_else(|| malformed(MSG, "expected v="))?;
        let v = B64
            .decode(v)
            .map_err(|_| malformed(MSG, "the signature is not base64"))?;
        let expected = self
            .expected_server_signature
            .as_ref()
            .ok_or_else(|| malformed(MSG, "it came before the client's final message"))?;
        // Not secret (it is the server's proof, already on the wire); a plain compare is fine.
        if &v == expected {
            Ok(())
        } else {
            Err(ScramClientError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil", 4096 iterations.
    #[test]
    fn rfc7677_sha256_exchange() {
        let mut c = ScramClient::new(
            SaslMechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(c.first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec());
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let final_msg = c.answer(server_first).expect("final");
        assert_eq!(
            String::from_utf8(final_msg).expect("utf8"),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.check(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("server signature");
        assert_eq!(
            c.check(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramClientError::BadServerSignature)
        );
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let mut c = ScramClient::new(SaslMechanism::ScramSha512, "u", "p", "abc");
        assert_eq!(
            c.answer(b"r=xyzdef,s=c2FsdA==,i=4096"),
            Err(ScramClientError::NonceMismatch)
        );
        assert_eq!(
            c.answer(b"r=abc,s=c2FsdA==,i=4096"),
            Err(ScramClientError::NonceMismatch)
        );
    }

    #[test]
    fn malformed_and_refusing_server_messages_are_named() {
        let mut c = ScramClient::new(SaslMechanism::ScramSha512, "u", "p", "abc");
        for (input, want) in [
            (&b"r=abcd,s=c2FsdA=="[..], "expected r=, s= and i="),
            (b"r=abcd,s=!!!,i=4096", "the salt is not base64"),
            (
                b"r=abcd,s=c2FsdA==,i=0",
                "the iteration count is not a number in 1..=1000000",
            ),
            (b"\xff", "not UTF-8"),
        ] {
            match c.answer(input) {
                Err(ScramClientError::Malformed { reason, .. }) => assert_eq!(reason, want),
                other => panic!("{input:?}: {other:?}"),
            }
        }
        assert_eq!(
            c.answer(b"e=unknown-user"),
            Err(ScramClientError::Refused("unknown-user".into()))
        );
        assert!(matches!(
            c.check(b"v=AAAA"),
            Err(ScramClientError::Malformed { .. })
        ));
    }

    #[test]
    fn names_with_commas_and_equals_are_escaped() {
        let c = ScramClient::new(SaslMechanism::ScramSha256, "a,b=c", "p", "n");
        assert_eq!(c.first(), b"n,,n=a=2Cb=3Dc,r=n".to_vec());
    }

    #[test]
    fn salted_password_matches_rfc7677() {
        // The RFC's SaltedPassword is not printed, but its ClientKey derives from it; checking
        // the exchange above covers it, so here only length and determinism.
        let a = salted_password(SaslMechanism::ScramSha512, "pw", b"salt", 4096);
        assert_eq!(a.len(), 64);
        assert_eq!(
            a,
            salted_password(SaslMechanism::ScramSha512, "pw", b"salt", 4096)
        );
        assert_ne!(
            a,
            salted_password(SaslMechanism::ScramSha512, "pw", b"salu", 4096)
        );
    }

    #[test]
    fn credentials_never_print_their_password() {
        let c = SaslCredentials {
            mechanism: SaslMechanism::ScramSha512,
            username: "ops".into(),
            password: "hunter2".into(),
        };
        let shown = format!(
            "{c:?} {:?}",
            ClientSecurity {
                tls_ca_pem: None,
                sasl: Some(c.clone())
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ops"));
    }

    #[test]
    fn tls_config_needs_a_certificate() {
        assert!(tls_config("no pem here").is_err());
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["ca".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert!(tls_config(&cert.pem()).is_ok());
    }
}
