//! Client certificate subjects with any number of `O=` values, by rewriting the subject of a signed certificate.
//!
//! rcgen keeps one value per distinguished-name attribute (a `HashMap` keyed by type), but Kubernetes reads
//! each group from its own `O=` attribute. So the client certificate is first signed by rcgen with an empty
//! subject; then its TBSCertificate gets the subject built here (`O=<group>`... then `CN=<user>`, the order
//! Go's `pkix.Name` writes) and is signed again with the CA key. Only DER lengths change; every other byte
//! rcgen wrote (serial, validity, extensions, algorithm identifier) is kept.

use rcgen::SigningKey;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_VERSION: u8 = 0xa0;
/// DER of the OID 2.5.4.3 (commonName).
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// DER of the OID 2.5.4.10 (organizationName).
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// One DER element: its tag, its whole encoding and its content.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

/// Reads the element at the start of `input`; returns it and the bytes after it.
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("unexpected end of data")?;
    if tag & 0x1f == 0x1f {
        return Err(format!("multi-byte tag {tag:#x} is not supported"));
    }
    let (&first, rest) = rest.split_first().ok_or("missing length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(format!("bad length encoding {first:#x}"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(format!(
            "element of {len} bytes overruns the {} left",
            rest.len()
        ));
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        whole: &input[..header + len],
        content: &rest[..len],
    };
    Ok((tlv, &rest[len..]))
}

/// Appends the DER encoding of an element with `tag` and `content` to `out`.
fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    write_tlv(&mut out, tag, content);
    out
}

/// One RDN with a single attribute: `SET { SEQUENCE { oid, UTF8String value } }`.
fn rdn(oid: &[u8], value: &str) -> Vec<u8> {
    let mut attr = tlv(TAG_OID, oid);
    write_tlv(&mut attr, TAG_UTF8_STRING, value.as_bytes());
    tlv(TAG_SET, &tlv(TAG_SEQUENCE, &attr))
}

/// The DER `Name` `O=<groups[0]>, O=<groups[1]>, ..., CN=<common_name>`.
pub(crate) fn encode_subject(common_name: &str, groups: &[String]) -> Vec<u8> {
    let mut rdns: Vec<u8> = groups
        .iter()
        .flat_map(|g| rdn(OID_ORGANIZATION, g))
        .collect();
    rdns.extend(rdn(OID_COMMON_NAME, common_name));
    tlv(TAG_SEQUENCE, &rdns)
}

/// Returns `cert_der` with its subject replaced by `subject_der` and signed again with `ca_key`.
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    ca_key: &impl SigningKey,
) -> Result<Vec<u8>, String> {
    let (cert, trailing) = read_tlv(cert_der)?;
    if cert.tag != TAG_SEQUENCE || !trailing.is_empty() {
        return Err("not a single DER certificate".into());
    }
    let (tbs, rest) = read_tlv(cert.content)?;
    let (algorithm, rest) = read_tlv(rest)?;
    if tbs.tag != TAG_SEQUENCE || algorithm.tag != TAG_SEQUENCE {
        return Err(
            "certificate is not SEQUENCE { tbsCertificate, signatureAlgorithm, ... }".into(),
        );
    }
    let (signature, rest) = read_tlv(rest)?;
    if signature.tag != TAG_BIT_STRING || !rest.is_empty() {
        return Err("certificate signature is not a BIT STRING".into());
    }

    // TBSCertificate: [0] version (optional), serialNumber, signature, issuer, validity, subject, ...
    let mut fields = tbs.content;
    let mut position = 0;
    let mut new_tbs = Vec::with_capacity(tbs.content.len() + subject_der.len());
    let (first, _) = read_tlv(fields)?;
    let subject_index = if first.tag == TAG_VERSION { 5 } else { 4 };
    let mut replaced = false;
    while !fields.is_empty() {
        let (field, rest) = read_tlv(fields)?;
        if position == subject_index {
            if field.tag != TAG_SEQUENCE {
                return Err("tbsCertificate subject is not a SEQUENCE".into());
            }
            new_tbs.extend_from_slice(subject_der);
            replaced = true;
        } else {
            new_tbs.extend_from_slice(field.whole);
        }
        position += 1;
        fields = rest;
    }
    if !replaced {
        return Err("tbsCertificate has no subject".into());
    }
    let new_tbs = tlv(TAG_SEQUENCE, &new_tbs);

    let signature = ca_key
        .sign(&new_tbs)
        .map_err(|e| format!("signing failed: {e}"))?;
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(&signature);

    let mut body = new_tbs;
    body.extend_from_slice(algorithm.whole);
    write_tlv(&mut body, TAG_BIT_STRING, &bits);
    Ok(tlv(TAG_SEQUENCE, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_short_and_long_forms() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![0xab; len];
            let encoded = tlv(TAG_SEQUENCE, &content);
            let (parsed, rest) = read_tlv(&encoded).unwrap();
            assert_eq!(parsed.tag, TAG_SEQUENCE);
            assert_eq!(parsed.content.len(), len);
            assert_eq!(parsed.whole.len(), encoded.len());
            assert!(rest.is_empty());
        }
        // 128 needs the long form 0x81 0x80.
        assert_eq!(&tlv(TAG_SEQUENCE, &[0; 128])[..3], &[0x30, 0x81, 0x80]);
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_err());
        assert!(read_tlv(&[0x30]).is_err());
        assert!(read_tlv(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn subject_parses_with_x509_parser_in_order() {
        let der = encode_subject("alice", &["devs".into(), "ops".into(), "qa".into()]);
        use x509_parser::prelude::FromDer;
        let (rest, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let orgs: Vec<_> = name
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["devs", "ops", "qa"]);
        assert_eq!(
            name.iter_common_name().next().unwrap().as_str().unwrap(),
            "alice"
        );
        assert_eq!(name.to_string(), "O=devs, O=ops, O=qa, CN=alice");
    }
}
