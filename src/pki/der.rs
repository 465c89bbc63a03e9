//! Minimal DER reading and writing: just enough to rewrite the issuer and
//! subject names of a certificate produced by rcgen and re-sign it.
//!
//! Why this exists: rcgen's `DistinguishedName` holds one value per attribute
//! type, but Kubernetes reads a user's groups from *every* `O` attribute of the
//! subject, so a certificate with several groups needs several `O`s. It also
//! lets a leaf's issuer be the CA's subject byte for byte (which chain
//! building compares), whatever string types the CA used.
//!
//! Invariant: only definite-length, single-byte-tag DER is accepted; anything
//! else is an error, never a panic.

/// A parsed tag-length-value element.
pub(super) struct Tlv<'a> {
    pub tag: u8,
    /// The whole element, header included.
    pub full: &'a [u8],
    /// The element's content, header excluded.
    pub content: &'a [u8],
}

pub(super) const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_OID: u8 = 0x06;
const TAG_BIT_STRING: u8 = 0x03;

/// OID 2.5.4.3 (commonName), content octets.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// OID 2.5.4.10 (organizationName), content octets.
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// Read one element from the front of `input`; returns it and the rest.
pub(super) fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, after_tag) = input.split_first().ok_or("truncated DER: no tag")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte DER tags are not supported".into());
    }
    let (&first_len, after_len0) = after_tag.split_first().ok_or("truncated DER: no length")?;
    let (len, header_len) = if first_len < 0x80 {
        (usize::from(first_len), 2usize)
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return Err("unsupported DER length encoding".into());
        }
        let len_bytes = after_len0.get(..n).ok_or("truncated DER length")?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let total = header_len.checked_add(len).ok_or("DER length overflows")?;
    let full = input.get(..total).ok_or("truncated DER element")?;
    let content = full.get(header_len..).ok_or("truncated DER element")?;
    let rest = input.get(total..).ok_or("truncated DER element")?;
    Ok((Tlv { tag, full, content }, rest))
}

/// Split the content of a constructed element into its child elements.
pub(super) fn children(mut content: &[u8]) -> Result<Vec<Tlv<'_>>, String> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read_tlv(content)?;
        out.push(tlv);
        content = rest;
    }
    Ok(out)
}

/// Encode one element.
pub(super) fn write_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        // Fits in the short form by the branch condition.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A BIT STRING with no unused bits holding `bytes`.
pub(super) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    write_tlv(TAG_BIT_STRING, &content)
}

/// An X.501 Name with one RDN per organization followed by the common name
/// (the order Go's `pkix.Name` uses), all as UTF8String.
pub(super) fn name(common_name: &str, organizations: &[&str]) -> Vec<u8> {
    let mut rdns = Vec::new();
    let attribute = |oid: &[u8], value: &str| {
        let mut atv = write_tlv(TAG_OID, oid);
        atv.extend(write_tlv(TAG_UTF8_STRING, value.as_bytes()));
        write_tlv(TAG_SET, &write_tlv(TAG_SEQUENCE, &atv))
    };
    for org in organizations {
        rdns.extend(attribute(OID_ORGANIZATION, org));
    }
    rdns.extend(attribute(OID_COMMON_NAME, common_name));
    write_tlv(TAG_SEQUENCE, &rdns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 70000] {
            let content = vec![7u8; len];
            let enc = write_tlv(TAG_SEQUENCE, &content);
            let (tlv, rest) = read_tlv(&enc).unwrap();
            assert!(rest.is_empty());
            assert_eq!(tlv.tag, TAG_SEQUENCE);
            assert_eq!(tlv.content.len(), len);
            assert_eq!(tlv.full.len(), enc.len());
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x05, 0x01],
            &[0x30, 0x80],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x82, 0x01],
            &[0x1f, 0x01, 0x00],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ];
        for c in cases {
            assert!(read_tlv(c).is_err(), "{c:?}");
        }
    }

    #[test]
    fn name_parses_with_x509_parser() {
        use x509_parser::prelude::FromDer;
        let der = name("system:node:a", &["system:nodes", "extra"]);
        let (rest, parsed) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let cn: Vec<_> = parsed
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let orgs: Vec<_> = parsed
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["system:node:a"]);
        assert_eq!(orgs, ["system:nodes", "extra"]);
    }
}
