//! Certificate mechanics: generating CAs, issuing leaves with explicit
//! validity, parsing PEM/DER, deciding whether an existing leaf is still good,
//! and reading a client identity from a certificate.
//!
//! Pure apart from randomness (keys, serials) and never touches the
//! filesystem: `server.rs` decides what to load and write. All keys are ECDSA
//! P-256 (as in k3s). Every issued leaf has a random serial, the CA's subject
//! as its issuer byte for byte, and an authority key identifier.

use std::net::IpAddr;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
    SigningKey,
};
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use super::der;
use super::error::PkiError;

/// Seconds in a day.
pub(super) const DAY: i64 = 24 * 60 * 60;
/// New certificates are back-dated by this much to tolerate small clock skew
/// between server and clients.
const BACKDATE_SECS: i64 = 5 * 60;

/// The Kubernetes identity carried by a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject common name (the Kubernetes user name).
    pub user: String,
    /// Every subject organization, in certificate order (the Kubernetes groups).
    pub groups: Vec<String>,
}

/// Read the user (CN) and groups (every O) from a DER certificate, as the
/// Kubernetes x509 authenticator does. Call this only on a certificate that
/// TLS has already verified against the client CA.
pub fn identity_from_der(cert_der: &[u8]) -> Result<ClientIdentity, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::InvalidCertificate(format!("cannot parse: {e}")))?;
    let subject = cert.subject();
    // Like Go's pkix.Name (which Kubernetes uses), the last CN wins.
    let user = subject
        .iter_common_name()
        .last()
        .ok_or_else(|| PkiError::InvalidCertificate("subject has no common name".into()))?
        .as_str()
        .map_err(|e| PkiError::InvalidCertificate(format!("common name is not a string: {e}")))?
        .to_string();
    if user.is_empty() {
        return Err(PkiError::InvalidCertificate(
            "subject common name is empty".into(),
        ));
    }
    let groups = subject
        .iter_organization()
        .map(|o| {
            o.as_str().map(str::to_string).map_err(|e| {
                PkiError::InvalidCertificate(format!("organization is not a string: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClientIdentity { user, groups })
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Usage {
    Server,
    Client,
}

/// Subject alternative names, split by kind. DNS names are kept lower-case
/// and de-duplicated; order is first-seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Sans {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Sans {
    /// Add a name that may be an IP address or a DNS name (as `--tls-san` takes).
    pub fn push_name(&mut self, value: &str) -> Result<(), PkiError> {
        let value = value.trim();
        if let Ok(ip) = value.parse::<IpAddr>() {
            self.push_ip(ip);
            return Ok(());
        }
        validate_dns_name(value)?;
        let lower = value.to_ascii_lowercase();
        if !self.dns.contains(&lower) {
            self.dns.push(lower);
        }
        Ok(())
    }

    pub fn push_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// Names in `self` that `other` lacks, for log messages.
    pub fn missing_from(&self, other: &Sans) -> Vec<String> {
        let dns = self.dns.iter().filter(|d| !other.dns.contains(d)).cloned();
        let ips = self
            .ips
            .iter()
            .filter(|ip| !other.ips.contains(ip))
            .map(|ip| ip.to_string());
        dns.chain(ips).collect()
    }
}

fn validate_dns_name(value: &str) -> Result<(), PkiError> {
    let bad = |reason: &str| PkiError::InvalidSan {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Err(bad("empty"));
    }
    if value.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*'))
    {
        return Err(bad(
            "not an IP address, and a DNS name may only contain letters, digits, '-', '.', '_' and '*'",
        ));
    }
    if value.split('.').any(str::is_empty) {
        return Err(bad("empty DNS label"));
    }
    Ok(())
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LeafSpec {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub usage: Usage,
    pub sans: Sans,
}

/// A CA that can sign: its certificate and private key.
pub(super) struct Ca {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key: KeyPair,
}

impl Ca {
    /// Build from PEM text, checking that the certificate is a CA and that
    /// the key belongs to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CaLoadError> {
        let cert_der = first_cert_der(cert_pem).map_err(CaLoadError::Cert)?;
        let key = parse_key(key_pem).map_err(CaLoadError::Key)?;
        {
            let (_, cert) = X509Certificate::from_der(&cert_der)
                .map_err(|e| CaLoadError::Cert(format!("cannot parse certificate: {e}")))?;
            if !cert.is_ca() {
                return Err(CaLoadError::Cert(
                    "certificate is not a CA (basicConstraints CA:FALSE or missing)".into(),
                ));
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
                return Err(CaLoadError::Mismatch);
            }
        }
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            cert_der,
            key,
        })
    }

    /// The CA certificate's notAfter as unix seconds.
    pub fn not_after(&self) -> Result<i64, String> {
        let (_, cert) = X509Certificate::from_der(&self.cert_der)
            .map_err(|e| format!("cannot parse certificate: {e}"))?;
        Ok(cert.validity().not_after.timestamp())
    }
}

/// Why a CA could not be loaded (the caller attaches paths).
#[derive(Debug)]
pub(super) enum CaLoadError {
    Cert(String),
    Key(String),
    Mismatch,
}

/// A freshly issued leaf: the leaf certificate alone (no chain) and its key.
pub(super) struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generate a new ECDSA P-256 key pair.
pub(super) fn generate_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| PkiError::generate(what, e))
}

/// Parse a PKCS#8 private key from PEM.
pub(super) fn parse_key(key_pem: &str) -> Result<KeyPair, String> {
    KeyPair::from_pem(key_pem).map_err(|e| {
        format!("cannot parse private key (expected a PKCS#8 \"PRIVATE KEY\" PEM block): {e}")
    })
}

/// Self-sign a CA certificate for `key`, valid from `not_before` to
/// `not_after` (unix seconds). Returns the certificate PEM.
pub(super) fn self_signed_ca(
    common_name: &str,
    key: &KeyPair,
    not_before: i64,
    not_after: i64,
) -> Result<String, PkiError> {
    let what = || format!("CA certificate {common_name}");
    let mut params = CertificateParams::default();
    set_validity(&mut params, not_before, not_after).map_err(|e| PkiError::generate(what(), e))?;
    params.serial_number = Some(random_serial());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let cert = params
        .self_signed(key)
        .map_err(|e| PkiError::generate(what(), e))?;
    Ok(pem_encode("CERTIFICATE", cert.der()))
}

/// Issue a leaf for `spec` signed by `ca`, valid from `not_before` to
/// `not_after` (unix seconds), with a new key.
pub(super) fn issue_leaf(
    ca: &Ca,
    spec: &LeafSpec,
    not_before: i64,
    not_after: i64,
) -> Result<Issued, PkiError> {
    let what = || format!("certificate for {}", spec.common_name);
    if spec.common_name.is_empty() {
        return Err(PkiError::InvalidRequest("empty common name".into()));
    }
    if spec.organizations.iter().any(String::is_empty) {
        return Err(PkiError::InvalidRequest("empty organization".into()));
    }
    if not_after <= not_before {
        return Err(PkiError::InvalidRequest(
            "certificate would expire before it starts".into(),
        ));
    }
    let key = generate_key(&what())?;

    let mut params = CertificateParams::default();
    set_validity(&mut params, not_before, not_after).map_err(|e| PkiError::generate(what(), e))?;
    params.serial_number = Some(random_serial());
    // Placeholder: the subject is rewritten below so it can hold several O's.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.common_name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match spec.usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    for dns in &spec.sans.dns {
        let ia5 = dns.as_str().try_into().map_err(|e| PkiError::InvalidSan {
            value: dns.clone(),
            reason: format!("{e}"),
        })?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    for ip in &spec.sans.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }

    let issuer = Issuer::from_ca_cert_der(&ca.cert_der, &ca.key)
        .map_err(|e| PkiError::generate(what(), format!("reading issuing CA: {e}")))?;
    let draft = params
        .signed_by(&key, &issuer)
        .map_err(|e| PkiError::generate(what(), e))?;

    let ca_subject = {
        let (_, ca_cert) = X509Certificate::from_der(&ca.cert_der)
            .map_err(|e| PkiError::generate(what(), format!("parsing issuing CA: {e}")))?;
        ca_cert.subject().as_raw().to_vec()
    };
    let orgs: Vec<&str> = spec.organizations.iter().map(String::as_str).collect();
    let subject = der::name(&spec.common_name, &orgs);
    let final_der = rewrite_names(draft.der(), &ca_subject, &subject, &ca.key)
        .map_err(|e| PkiError::generate(what(), e))?;

    Ok(Issued {
        cert_pem: pem_encode("CERTIFICATE", &final_der),
        key_pem: key.serialize_pem(),
    })
}

/// Replace the issuer and subject Names of a signed certificate and sign the
/// result again with `signer` (which must be the key the draft was signed
/// with, so the signature algorithm fields stay right).
fn rewrite_names(
    cert_der: &[u8],
    issuer_name: &[u8],
    subject_name: &[u8],
    signer: &KeyPair,
) -> Result<Vec<u8>, String> {
    let (outer, rest) = der::read_tlv(cert_der)?;
    if outer.tag != der::TAG_SEQUENCE || !rest.is_empty() {
        return Err("draft certificate is not a single SEQUENCE".into());
    }
    let parts = der::children(outer.content)?;
    let [tbs, sig_alg, _sig] = parts.as_slice() else {
        return Err("draft certificate does not have three parts".into());
    };
    let fields = der::children(tbs.content)?;
    // TBSCertificate: [0] version (optional), serial, signature, issuer,
    // validity, subject, subjectPublicKeyInfo, ...
    let base = usize::from(fields.first().is_some_and(|f| f.tag == 0xa0));
    let issuer_idx = base + 2;
    let subject_idx = base + 4;
    if fields.len() <= subject_idx + 1 {
        return Err("draft TBSCertificate is too short".into());
    }
    let mut tbs_content = Vec::with_capacity(tbs.content.len() + 256);
    for (i, field) in fields.iter().enumerate() {
        if i == issuer_idx {
            tbs_content.extend_from_slice(issuer_name);
        } else if i == subject_idx {
            tbs_content.extend_from_slice(subject_name);
        } else {
            tbs_content.extend_from_slice(field.full);
        }
    }
    let new_tbs = der::write_tlv(der::TAG_SEQUENCE, &tbs_content);
    let signature = signer.sign(&new_tbs).map_err(|e| format!("signing: {e}"))?;
    let mut cert_content = new_tbs;
    cert_content.extend_from_slice(sig_alg.full);
    cert_content.extend(der::bit_string(&signature));
    Ok(der::write_tlv(der::TAG_SEQUENCE, &cert_content))
}

/// Decide whether an existing leaf must be re-issued. `Ok(None)` means keep
/// it; `Ok(Some(reason))` means re-issue; `Err` means the certificate cannot
/// even be parsed (the caller names the file).
pub(super) fn leaf_reissue_reason(
    cert_der: &[u8],
    key: &KeyPair,
    ca: &Ca,
    spec: &LeafSpec,
    now: i64,
    renew_before_secs: i64,
) -> Result<Option<String>, String> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("cannot parse certificate: {e}"))?;
    let (_, ca_cert) = X509Certificate::from_der(&ca.cert_der)
        .map_err(|e| format!("cannot parse CA certificate: {e}"))?;

    let not_after = cert.validity().not_after.timestamp();
    let not_before = cert.validity().not_before.timestamp();
    if not_after.saturating_sub(now) < renew_before_secs {
        return Ok(Some(format!(
            "expires {} (less than {} days away)",
            cert.validity().not_after,
            renew_before_secs / DAY
        )));
    }
    if not_before > now {
        return Ok(Some(format!(
            "not valid until {}",
            cert.validity().not_before
        )));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Ok(Some("certificate does not match its private key".into()));
    }
    if cert.issuer().as_raw() != ca_cert.subject().as_raw()
        || cert.verify_signature(Some(ca_cert.public_key())).is_err()
    {
        return Ok(Some("not issued by the current CA".into()));
    }
    let usage_ok = match cert.extended_key_usage() {
        Ok(Some(eku)) => match spec.usage {
            Usage::Server => eku.value.server_auth,
            Usage::Client => eku.value.client_auth,
        },
        _ => false,
    };
    if !usage_ok {
        return Ok(Some("extended key usage changed".into()));
    }
    match identity_from_der(cert_der) {
        Ok(id) if id.user == spec.common_name && id.groups == spec.organizations => {}
        _ => return Ok(Some("subject changed".into())),
    }
    let have = cert_sans(&cert)?;
    let missing = spec.sans.missing_from(&have);
    if !missing.is_empty() {
        return Ok(Some(format!(
            "subject alternative names no longer cover {}",
            missing.join(", ")
        )));
    }
    Ok(None)
}

/// The DNS and IP SANs of a parsed certificate (DNS lower-cased).
fn cert_sans(cert: &X509Certificate<'_>) -> Result<Sans, String> {
    let mut sans = Sans::default();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| format!("cannot parse subjectAltName: {e}"))?;
    if let Some(ext) = ext {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    let lower = d.to_ascii_lowercase();
                    if !sans.dns.contains(&lower) {
                        sans.dns.push(lower);
                    }
                }
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        sans.push_ip(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        sans.push_ip(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(sans)
}

/// The first CERTIFICATE block of a PEM text, as DER.
pub(super) fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    certs_der(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| "no CERTIFICATE PEM block".to_string())
}

/// Every CERTIFICATE block of a PEM text, as DER, in order.
pub(super) fn certs_der(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))
}

/// Encode DER as a PEM block with 64-column lines.
pub(super) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // Base64 output is ASCII, so splitting on byte boundaries is safe.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Set a certificate's validity from unix seconds. (rcgen's date type comes
/// from the `time` crate, which skiff does not depend on directly, so it is
/// only ever reached through x509-parser's `ASN1Time`.)
fn set_validity(
    params: &mut CertificateParams,
    not_before: i64,
    not_after: i64,
) -> Result<(), String> {
    let to_date = |unix: i64| {
        ASN1Time::from_timestamp(unix)
            .map(|t| t.to_datetime())
            .map_err(|e| format!("timestamp {unix} out of range: {e}"))
    };
    params.not_before = to_date(not_before)?;
    params.not_after = to_date(not_after)?;
    Ok(())
}

/// A random positive 128-bit serial number.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    // A leading zero byte would be dropped by DER; keep the serial 16 bytes.
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Unix seconds now minus the back-dating allowance, and that plus `days`.
pub(super) fn validity_window(now: i64, days: u32) -> (i64, i64) {
    (now - BACKDATE_SECS, now + i64::from(days) * DAY)
}
