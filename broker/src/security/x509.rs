//! A certificate's subject as Kafka names a TLS client: the distinguished name in RFC 2253
//! form (`CN=app,OU=team,O=Example`, the last RDN first), which is Kafka's default SSL
//! principal (`ssl.principal.mapping.rules=DEFAULT`) and what `--super-users` and ACLs name.
//!
//! A small DER reader of our own instead of an X.509 crate: only the path to the subject is
//! walked (`Certificate` → `tbsCertificate` → the sixth field), every length is checked against
//! the bytes left, and anything unexpected is `None`. The certificate has already been verified
//! by rustls against the CA when this runs.

/// The subject of a DER certificate in RFC 2253 form, `None` if it cannot be read.
pub fn subject_dn(cert: &[u8]) -> Option<String> {
    let (tag, cert_body, _) = read_tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = read_tlv(cert_body)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] EXPLICIT version, optional.
    if tbs.first() == Some(&0xa0) {
        tbs = read_tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        tbs = read_tlv(tbs)?.2;
    }
    let (tag, subject, _) = read_tlv(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    name_to_string(subject)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// One DER tag-length-value: (tag, value, the bytes after it).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        // High tag numbers do not occur on the subject's path.
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// `Name`: a SEQUENCE OF RelativeDistinguishedName, printed last first.
fn name_to_string(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, rest) = read_tlv(name)?;
        if tag != SET {
            return None;
        }
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (tag, atv, after) = read_tlv(set)?;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = read_tlv(atv)?;
            if tag != OID {
                return None;
            }
            let (vtag, vbytes, _) = read_tlv(value)?;
            let key = attribute_name(oid)?;
            let text = match string_value(vtag, vbytes) {
                Some(s) => escape(&s),
                None => format!("#{}", hex(value)),
            };
            parts.push(format!("{key}={text}"));
            set = after;
        }
        rdns.push(parts.join("+"));
        name = rest;
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn attribute_name(oid: &[u8]) -> Option<String> {
    let dotted = oid_to_string(oid)?;
    Some(
        match dotted.as_str() {
            "2.5.4.3" => "CN",
            "2.5.4.6" => "C",
            "2.5.4.7" => "L",
            "2.5.4.8" => "ST",
            "2.5.4.9" => "STREET",
            "2.5.4.10" => "O",
            "2.5.4.11" => "OU",
            "0.9.2342.19200300.100.1.25" => "DC",
            "0.9.2342.19200300.100.1.1" => "UID",
            _ => return Some(dotted),
        }
        .to_string(),
    )
}

fn oid_to_string(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut out = format!("{}.{}", first / 40, first % 40);
    let mut value: u64 = 0;
    for &b in rest {
        value = value.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            out.push_str(&format!(".{value}"));
            value = 0;
        }
    }
    Some(out)
}

/// The text of a directory string (UTF8String, PrintableString, IA5String, TeletexString
/// read as Latin-1, BMPString).
fn string_value(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(bytes).ok().map(str::to_string),
        0x14 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253 section 2.4 escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.distinguished_name = dn;
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn subjects_print_in_rfc2253_order_with_escapes() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        dn.push(rcgen::DnType::OrganizationalUnitName, "team+ops");
        dn.push(rcgen::DnType::CommonName, "app-1");
        assert_eq!(
            subject_dn(&cert_with(dn)).as_deref(),
            Some("CN=app-1,OU=team\\+ops,O=Example\\, Inc.,C=DE")
        );
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, " broker ");
        assert_eq!(
            subject_dn(&cert_with(dn)).as_deref(),
            Some("CN=\\ broker\\ ")
        );
    }

    #[test]
    fn truncated_or_garbage_input_is_none_not_a_panic() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "x");
        let der = cert_with(dn);
        for n in 0..der.len() {
            let _ = subject_dn(&der[..n]);
        }
        assert_eq!(subject_dn(&[]), None);
        assert_eq!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_dn(b"-----BEGIN CERTIFICATE-----"), None);
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = subject_dn(&flipped);
            flipped[i] ^= 0xff;
        }
    }

    #[test]
    fn oids_decode_including_multi_byte_arcs() {
        // 0.9.2342.19200300.100.1.25 (domainComponent)
        let dc = [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
        assert_eq!(
            oid_to_string(&dc).as_deref(),
            Some("0.9.2342.19200300.100.1.25")
        );
        assert_eq!(attribute_name(&dc).as_deref(), Some("DC"));
        assert_eq!(
            oid_to_string(&[0x55, 0x04, 0x03]).as_deref(),
            Some("2.5.4.3")
        );
    }
}
