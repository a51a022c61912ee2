//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the stored credential, its derivation
//! from a password, and both sides of the exchange. The server side authenticates clients; the
//! client side exists for the tests (and checks this code against the RFC's test vector).
//!
//! Only the credential is kept, never the password: salt, iteration count, StoredKey and
//! ServerKey. A client proves it knows the password without sending it; the server proves it
//! holds the credential in its final message. No channel binding (`p=` is refused), as Kafka.
//!
//! Every message from the peer is parsed without panicking: a malformed one is an
//! [`ScramError`], which the caller turns into an authentication failure.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use super::{ct_eq, random_bytes, Mechanism};

/// Fewest and most PBKDF2 iterations a credential may have (Kafka's bounds; RFC 7677 asks for
/// at least 4096).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// Longest user name, nonce or proof accepted from a client; a message that carries more is
/// refused before anything is computed.
const MAX_FIELD: usize = 1024;

/// A user's SCRAM credential for one mechanism (what the metadata quorum stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// Base64 in JSON, as it travels in `server-first-message`.
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

mod b64 {
    use super::{Engine, B64};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Why an exchange failed. The messages never contain a password or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    #[error("malformed {message}: {reason}")]
    Malformed {
        message: &'static str,
        reason: String,
    },
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the nonce of the final message is not the one of this exchange")]
    NonceMismatch,
    #[error("invalid credentials")]
    InvalidProof,
    #[error("the server's signature does not match: it does not hold this user's credential")]
    BadServerSignature,
    #[error("iterations {0} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    #[error("the server answered an error: {0}")]
    ServerError(String),
}

fn malformed(message: &'static str, reason: impl Into<String>) -> ScramError {
    ScramError::Malformed {
        message,
        reason: reason.into(),
    }
}

impl Mechanism {
    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Mechanism::ScramSha512 => hmac::HMAC_SHA512,
            _ => hmac::HMAC_SHA256,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::ScramSha512 => &digest::SHA512,
            _ => &digest::SHA256,
        }
    }

    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
            _ => pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }

    /// Output size of the mechanism's hash, in bytes.
    pub fn hash_len(self) -> usize {
        self.digest_alg().output_len()
    }
}

fn hmac(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(m.hmac_alg(), key), data)
        .as_ref()
        .to_vec()
}

fn hash(m: Mechanism, data: &[u8]) -> Vec<u8> {
    digest::digest(m.digest_alg(), data).as_ref().to_vec()
}

/// `Hi(password, salt, i)` of RFC 5802: PBKDF2 with the mechanism's HMAC.
pub fn salted_password(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; m.hash_len()];
    let i = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(m.pbkdf2_alg(), i, salt, password, &mut out);
    out
}

impl ScramCredential {
    /// The credential for a salted password (what AlterUserScramCredentials carries: the client
    /// salts the password itself, so the broker never sees it).
    pub fn from_salted_password(
        m: Mechanism,
        salted: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let client_key = hmac(m, salted, b"Client Key");
        ScramCredential {
            salt,
            iterations,
            stored_key: hash(m, &client_key),
            server_key: hmac(m, salted, b"Server Key"),
        }
    }

    /// The credential for `password` with a fresh random salt.
    pub fn derive(m: Mechanism, password: &[u8], iterations: u32) -> ScramCredential {
        let salt = random_bytes(24);
        let salted = salted_password(m, password, &salt, iterations);
        ScramCredential::from_salted_password(m, &salted, salt, iterations)
    }

    /// Whether `password` is the one this credential was derived from (SASL/PLAIN checks
    /// passwords against the stored SCRAM credential: the broker keeps no other form).
    pub fn matches_password(&self, m: Mechanism, password: &[u8]) -> bool {
        let salted = salted_password(m, password, &self.salt, self.iterations);
        let stored = hash(m, &hmac(m, &salted, b"Client Key"));
        ct_eq(&stored, &self.stored_key)
    }
}

/// Reverses the `saslname` escaping of RFC 5802 (`=2C` is `,`, `=3D` is `=`).
fn unescape_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => {
                return Err(malformed(
                    "client-first-message",
                    "bad escape in the user name",
                ))
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn escape_name(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// The attributes `k=v` of a message, in order; the value keeps any `=` it contains.
fn attributes<'a>(
    message: &'static str,
    text: &'a str,
) -> Result<Vec<(char, &'a str)>, ScramError> {
    text.split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &part[2..])),
                _ => Err(malformed(message, format!("attribute {part:?}"))),
            }
        })
        .collect()
}

fn utf8<'a>(message: &'static str, bytes: &'a [u8]) -> Result<&'a str, ScramError> {
    if bytes.len() > 4 * MAX_FIELD {
        return Err(malformed(message, format!("{} bytes", bytes.len())));
    }
    std::str::from_utf8(bytes).map_err(|_| malformed(message, "not UTF-8"))
}

fn printable_nonce(message: &'static str, nonce: &str) -> Result<(), ScramError> {
    if nonce.is_empty() || nonce.len() > MAX_FIELD || nonce.contains(',') {
        return Err(malformed(message, "bad nonce"));
    }
    if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(malformed(message, "nonce has non-printable characters"));
    }
    Ok(())
}

/// A fresh nonce: 24 random bytes, base64 (printable, no comma).
fn new_nonce() -> String {
    B64.encode(random_bytes(24))
}

/// What the client's first message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The GS2 header as sent (`n,,` or `y,,`, possibly with `a=authzid`): the client repeats it
    /// base64-encoded in its final message.
    pub gs2_header: String,
    pub user: String,
    pub nonce: String,
    /// `client-first-message-bare`, part of the AuthMessage.
    pub bare: String,
}

/// Parses `client-first-message`.
pub fn parse_client_first(bytes: &[u8]) -> Result<ClientFirst, ScramError> {
    const MSG: &str = "client-first-message";
    let text = utf8(MSG, bytes)?;
    let (cbind, rest) = text
        .split_once(',')
        .ok_or_else(|| malformed(MSG, "no GS2 header"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(malformed(MSG, "bad channel-binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed(MSG, "no GS2 header"))?;
    let gs2_header = format!("{cbind},{authzid},");
    let mut parts = bare.split(',');
    if bare.starts_with("m=") {
        return Err(malformed(MSG, "mandatory extension"));
    }
    let user = parts
        .next()
        .and_then(|p| p.strip_prefix("n="))
        .map(unescape_name)
        .transpose()?;
    // Extensions after the nonce (Kafka's `tokenauth=true` for delegation tokens) are not
    // served and ignored.
    let nonce = parts.next().and_then(|p| p.strip_prefix("r="));
    for ext in parts {
        let key = ext.split_once('=').map(|(k, _)| k).unwrap_or("");
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(malformed(MSG, format!("extension {ext:?}")));
        }
    }
    let user = user.ok_or_else(|| malformed(MSG, "no user name"))?;
    let nonce = nonce.ok_or_else(|| malformed(MSG, "no nonce"))?;
    if user.is_empty() || user.len() > MAX_FIELD {
        return Err(malformed(MSG, "bad user name"));
    }
    printable_nonce(MSG, nonce)?;
    if !authzid.is_empty() {
        // As Kafka: an authorization id may only repeat the user name.
        let id = authzid
            .strip_prefix("a=")
            .ok_or_else(|| malformed(MSG, "bad authorization id"))
            .and_then(unescape_name)?;
        if id != user {
            return Err(malformed(
                MSG,
                "authorization id differs from the user name",
            ));
        }
    }
    Ok(ClientFirst {
        gs2_header,
        user,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

/// The server's side of one exchange, after the client's first message.
#[derive(Debug)]
pub struct ServerExchange {
    mechanism: Mechanism,
    first: ClientFirst,
    credential: ScramCredential,
    /// Client nonce + server nonce.
    nonce: String,
    server_first: String,
    /// False for an unknown user: the exchange goes on with a made-up credential and fails at
    /// the proof, so a client learns nothing about which user names exist.
    known: bool,
}

impl ServerExchange {
    /// Starts the exchange for `first`; `credential` is the user's, `None` for an unknown user
    /// (answered with a salt derived from `secret` and the name, the same every time).
    pub fn start(
        mechanism: Mechanism,
        first: ClientFirst,
        credential: Option<ScramCredential>,
        secret: &[u8],
    ) -> ServerExchange {
        let known = credential.is_some();
        let credential = credential.unwrap_or_else(|| {
            let salt = hmac(mechanism, secret, first.user.as_bytes());
            ScramCredential {
                salt,
                iterations: MIN_ITERATIONS,
                stored_key: vec![0; mechanism.hash_len()],
                server_key: vec![0; mechanism.hash_len()],
            }
        });
        let nonce = format!("{}{}", first.nonce, new_nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        ServerExchange {
            mechanism,
            first,
            credential,
            nonce,
            server_first,
            known,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The user this exchange authenticates.
    pub fn user(&self) -> &str {
        &self.first.user
    }

    /// `server-first-message`.
    pub fn server_first(&self) -> &[u8] {
        self.server_first.as_bytes()
    }

    /// Checks `client-final-message`; on success returns `server-final-message`.
    pub fn finish(&self, bytes: &[u8]) -> Result<Vec<u8>, ScramError> {
        const MSG: &str = "client-final-message";
        let m = self.mechanism;
        let text = utf8(MSG, bytes)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| malformed(MSG, "no proof"))?;
        let attrs = attributes(MSG, without_proof)?;
        let (Some(('c', cbind)), Some(('r', nonce))) = (attrs.first(), attrs.get(1)) else {
            return Err(malformed(MSG, "expected c= and r="));
        };
        let cbind = B64
            .decode(cbind)
            .map_err(|_| malformed(MSG, "channel binding is not base64"))?;
        if cbind != self.first.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        if *nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| malformed(MSG, "proof is not base64"))?;
        if proof.len() != m.hash_len() {
            return Err(ScramError::InvalidProof);
        }
        let auth_message = format!("{},{},{without_proof}", self.first.bare, self.server_first);
        let signature = hmac(m, &self.credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !ct_eq(&hash(m, &client_key), &self.credential.stored_key) || !self.known {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac(m, &self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The client's side of one exchange (tests, and the check against RFC 7677's vector).
#[derive(Debug)]
pub struct ClientExchange {
    mechanism: Mechanism,
    password: Vec<u8>,
    bare: String,
    nonce: String,
    auth_message: Option<String>,
    salted: Vec<u8>,
}

impl ClientExchange {
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> ClientExchange {
        ClientExchange::with_nonce(mechanism, user, password, &new_nonce())
    }

    /// With a chosen client nonce (test vectors).
    pub fn with_nonce(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        nonce: &str,
    ) -> ClientExchange {
        ClientExchange {
            mechanism,
            password: password.as_bytes().to_vec(),
            bare: format!("n={},r={nonce}", escape_name(user)),
            nonce: nonce.to_string(),
            auth_message: None,
            salted: Vec::new(),
        }
    }

    /// `client-first-message`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.bare).into_bytes()
    }

    /// Answers `server-first-message` with `client-final-message`.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        const MSG: &str = "server-first-message";
        let m = self.mechanism;
        let text = utf8(MSG, server_first)?;
        let attrs = attributes(MSG, text)?;
        let (Some(('r', nonce)), Some(('s', salt)), Some(('i', iterations))) =
            (attrs.first(), attrs.get(1), attrs.get(2))
        else {
            return Err(malformed(MSG, "expected r=, s= and i="));
        };
        if !nonce.starts_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| malformed(MSG, "salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| malformed(MSG, "iterations is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        self.salted = salted_password(m, &self.password, &salt, iterations);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{text},{without_proof}", self.bare);
        let client_key = hmac(m, &self.salted, b"Client Key");
        let signature = hmac(m, &hash(m, &client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.auth_message = Some(auth_message);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks `server-final-message`.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        const MSG: &str = "server-final-message";
        let text = utf8(MSG, server_final)?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let v = text
            .strip_prefix("v=")
            .ok_or_else(|| malformed(MSG, "expected v="))?;
        let v = B64
            .decode(v)
            .map_err(|_| malformed(MSG, "signature is not base64"))?;
        let auth = self
            .auth_message
            .as_ref()
            .ok_or_else(|| malformed(MSG, "before the client's final message"))?;
        let server_key = hmac(self.mechanism, &self.salted, b"Server Key");
        let expected = hmac(self.mechanism, &server_key, auth.as_bytes());
        if ct_eq(&v, &expected) {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil", i=4096.
    #[test]
    fn rfc7677_sha256_vector() {
        let m = Mechanism::ScramSha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let salted = salted_password(m, b"pencil", &salt, 4096);
        let cred = ScramCredential::from_salted_password(m, &salted, salt, 4096);

        let mut client = ClientExchange::with_nonce(m, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = client.client_final(server_first).expect("final");
        assert_eq!(
            String::from_utf8(client_final.clone()).expect("utf8"),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("the RFC's server signature");

        // The server side, with the RFC's server nonce, produces the RFC's server-final.
        let first = parse_client_first(&client.client_first()).expect("first");
        let mut server = ServerExchange::start(m, first, Some(cred), b"secret");
        server.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        server.server_first = String::from_utf8(server_first.to_vec()).expect("utf8");
        assert_eq!(
            server.finish(&client_final).expect("proof accepted"),
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    fn run(
        m: Mechanism,
        cred: Option<ScramCredential>,
        user: &str,
        pw: &str,
    ) -> Result<(), ScramError> {
        let mut client = ClientExchange::new(m, user, pw);
        let first = parse_client_first(&client.client_first())?;
        let server = ServerExchange::start(m, first, cred, b"secret");
        let client_final = client.client_final(server.server_first())?;
        let server_final = server.finish(&client_final)?;
        client.verify_server_final(&server_final)
    }

    #[test]
    fn both_mechanisms_accept_the_right_password_and_only_it() {
        for m in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            let cred = ScramCredential::derive(m, b"s3cret, with = signs", 4096);
            assert_eq!(cred.stored_key.len(), m.hash_len());
            run(m, Some(cred.clone()), "al=ice,x", "s3cret, with = signs").expect("right password");
            assert_eq!(
                run(m, Some(cred.clone()), "alice", "wrong"),
                Err(ScramError::InvalidProof)
            );
            assert_eq!(
                run(m, None, "nobody", "anything"),
                Err(ScramError::InvalidProof)
            );
            assert!(cred.matches_password(m, b"s3cret, with = signs"));
            assert!(!cred.matches_password(m, b"s3cret"));
        }
    }

    #[test]
    fn an_unknown_user_gets_the_same_salt_every_time() {
        let m = Mechanism::ScramSha512;
        let first = || parse_client_first(b"n,,n=ghost,r=abc").expect("first");
        let a = ServerExchange::start(m, first(), None, b"k");
        let b = ServerExchange::start(m, first(), None, b"k");
        let salt = |s: &ServerExchange| s.server_first.split(',').nth(1).map(str::to_string);
        assert_eq!(salt(&a), salt(&b));
    }

    #[test]
    fn malformed_client_messages_are_refused_without_panicking() {
        for bad in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"n,,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=us=er,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"x,,n=user,r=abc",
            b"n,a=other,n=user,r=abc",
            b"n,,n=user,r=a,b",
            b"\xff\xfe",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_client_first(b"p=tls-unique,,n=user,r=abc"),
            Err(ScramError::ChannelBinding)
        );
        let long = format!("n,,n={},r=abc", "u".repeat(5000));
        assert!(parse_client_first(long.as_bytes()).is_err());
        let ok = parse_client_first(b"n,a=user,n=user,r=abc,ext=1").expect("authzid = user");
        assert_eq!(ok.user, "user");
        assert_eq!(ok.gs2_header, "n,a=user,");

        let m = Mechanism::ScramSha256;
        let cred = ScramCredential::derive(m, b"pw", 4096);
        let server = ServerExchange::start(
            m,
            parse_client_first(b"n,,n=user,r=abc").expect("first"),
            Some(cred),
            b"k",
        );
        for bad in [
            &b""[..],
            b"c=biws",
            b"c=biws,r=abc,p=",
            b"c=biws,r=abc,p=!!",
            b"r=abc,c=biws,p=AAAA",
            b"c=bad,r=abc,p=AAAA",
        ] {
            assert!(server.finish(bad).is_err(), "{bad:?}");
        }
        // The right shape, a nonce of another exchange.
        let e = server.finish(b"c=biws,r=abc,p=AAAA").expect_err("nonce");
        assert_eq!(e, ScramError::NonceMismatch);
    }

    #[test]
    fn credentials_serialize_as_base64() {
        let c = ScramCredential {
            salt: vec![1, 2, 3],
            iterations: 4096,
            stored_key: vec![4],
            server_key: vec![5],
        };
        let json = serde_json::to_string(&c).expect("json");
        assert!(json.contains("\"AQID\""), "{json}");
        assert_eq!(
            serde_json::from_str::<ScramCredential>(&json).expect("back"),
            c
        );
    }
}
