//! The cluster CA: created once under the data dir, reloaded on later starts, issuing serving and client certificates.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::{PRIVATE_MODE, PUBLIC_MODE, ensure_dir, read_pem, write_atomic};
use crate::identity::identity_from_name;
use crate::subject::{encode_subject, replace_subject};
use crate::{CertPaths, PkiError};

/// File stem of the CA certificate and key in the CA directory (`ca.crt`, `ca.key`).
pub const CA_FILE_STEM: &str = "ca";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a serving or client certificate is valid.
const LEAF_VALIDITY: Duration = Duration::days(365);
/// An existing certificate is re-issued when it expires sooner than this.
const RENEW_BEFORE: Duration = Duration::days(30);
/// Certificates start this long in the past, so clocks a little behind still accept them.
const BACKDATE: Duration = Duration::hours(1);

/// The cluster certificate authority (ECDSA P-256, self-signed).
pub struct Ca {
    paths: CertPaths,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    not_before: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("paths", &self.paths)
            .field("not_before", &self.not_before)
            .finish_non_exhaustive()
    }
}

/// What a leaf certificate is for.
enum Profile<'a> {
    Serving {
        sans: Vec<SanType>,
    },
    Client {
        common_name: &'a str,
        groups: &'a [String],
    },
}

impl Ca {
    /// Loads `dir/ca.crt` and `dir/ca.key`, or, when neither exists, creates a new CA
    /// (`CN=skiff-ca@<unix time>`, 10 years) and writes them (the key with mode 0600).
    /// Fails when only one of the two files exists rather than replacing a CA.
    pub fn load_or_create(dir: &Path) -> Result<Ca, PkiError> {
        let paths = CertPaths::in_dir(dir, CA_FILE_STEM);
        let exists = |p: &Path| p.try_exists().map_err(|e| PkiError::io("check", p, e));
        match (exists(&paths.cert)?, exists(&paths.key)?) {
            (true, true) => Ca::load(paths),
            (false, false) => {
                ensure_dir(dir)?;
                Ca::create(paths)
            }
            (true, false) => Err(PkiError::IncompleteCa {
                found: paths.cert,
                missing: paths.key,
            }),
            (false, true) => Err(PkiError::IncompleteCa {
                found: paths.key,
                missing: paths.cert,
            }),
        }
    }

    fn create(paths: CertPaths) -> Result<Ca, PkiError> {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::generate("generate the ca key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("skiff-ca@{}", now.unix_timestamp()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::generate("self-sign the ca certificate", e))?;

        // Key first: a crash in between leaves a key without a certificate, which load_or_create reports.
        write_atomic(&paths.key, key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
        let cert_pem = cert.pem();
        write_atomic(&paths.cert, cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(Ca {
            cert_pem,
            cert_der: cert.der().clone(),
            not_before: params.not_before,
            issuer: Issuer::new(params, key),
            paths,
        })
    }

    fn load(paths: CertPaths) -> Result<Ca, PkiError> {
        let cert_pem = read_pem(&paths.cert)?;
        let key_pem = read_pem(&paths.key)?;
        let cert_what = || format!("ca certificate {}", paths.cert.display());
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| PkiError::parse(format!("ca key {}", paths.key.display()), e))?;
        let cert_der = pem_to_der(&cert_pem).map_err(|e| PkiError::parse(cert_what(), e))?;
        let not_before = {
            let (_, cert) = X509Certificate::from_der(&cert_der)
                .map_err(|e| PkiError::parse(cert_what(), e))?;
            let is_ca = cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca);
            if !is_ca {
                return Err(PkiError::parse(
                    cert_what(),
                    "it is not a ca certificate (basic constraints)",
                ));
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
                return Err(PkiError::CaKeyMismatch {
                    cert: paths.cert.clone(),
                    key: paths.key.clone(),
                });
            }
            OffsetDateTime::from_unix_timestamp(cert.validity().not_before.timestamp())
                .map_err(|e| PkiError::parse(cert_what(), e))?
        };
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| PkiError::parse(cert_what(), e))?;
        Ok(Ca {
            paths,
            cert_pem,
            cert_der,
            not_before,
            issuer,
        })
    }

    /// Where the CA certificate and key are.
    pub fn paths(&self) -> &CertPaths {
        &self.paths
    }

    /// The CA certificate as PEM (for kubeconfigs and trust stores).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as DER (for a rustls `RootCertStore`).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues (or reuses) `dir/<name>.crt` + `dir/<name>.key`: a serving certificate (server auth) for `sans`,
    /// valid one year. Strings that parse as IP addresses become IP SANs, the others DNS SANs.
    /// An existing certificate is kept when it is signed by this CA, matches its key, covers every
    /// requested SAN and is valid for more than 30 more days.
    pub fn issue_serving(
        &self,
        dir: &Path,
        name: &str,
        sans: &[String],
    ) -> Result<CertPaths, PkiError> {
        let sans = parse_sans(name, sans)?;
        self.issue(dir, name, &Profile::Serving { sans })
    }

    /// Issues (or reuses) `dir/<name>.crt` + `dir/<name>.key`: a client certificate (client auth) with
    /// subject `O=<group>...`, `CN=<common_name>`, which Kubernetes reads as user and groups. Any number of
    /// groups is supported. Reuse rules as for [`Ca::issue_serving`], plus the subject must be the same.
    pub fn issue_client(
        &self,
        dir: &Path,
        name: &str,
        common_name: &str,
        groups: &[String],
    ) -> Result<CertPaths, PkiError> {
        let invalid = |reason: &str| PkiError::InvalidRequest {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if common_name.is_empty() {
            return Err(invalid("the common name (user) is empty"));
        }
        if groups.iter().any(String::is_empty) {
            return Err(invalid("a group is empty"));
        }
        self.issue(
            dir,
            name,
            &Profile::Client {
                common_name,
                groups,
            },
        )
    }

    fn issue(&self, dir: &Path, name: &str, profile: &Profile<'_>) -> Result<CertPaths, PkiError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(PkiError::InvalidRequest {
                name: name.to_owned(),
                reason: "the file stem must be a plain file name".to_owned(),
            });
        }
        ensure_dir(dir)?;
        let paths = CertPaths::in_dir(dir, name);
        if self.is_reusable(&paths, profile) {
            return Ok(paths);
        }

        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::generate(format!("generate the key for {name}"), e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = (now - BACKDATE).max(self.not_before);
        params.not_after = now + LEAF_VALIDITY;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        match profile {
            Profile::Serving { sans } => {
                params.distinguished_name.push(DnType::CommonName, name);
                params.subject_alt_names = sans.clone();
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            Profile::Client { .. } => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]
            }
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| PkiError::generate(format!("sign the certificate {name}"), e))?;
        let der = match profile {
            Profile::Serving { .. } => cert.der().to_vec(),
            Profile::Client {
                common_name,
                groups,
            } => replace_subject(
                cert.der(),
                &encode_subject(common_name, groups),
                self.issuer.key(),
            )
            .map_err(|reason| PkiError::Der {
                action: format!("set the subject of the certificate {name}"),
                reason,
            })?,
        };

        write_atomic(&paths.key, key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
        write_atomic(&paths.cert, der_to_pem(&der).as_bytes(), PUBLIC_MODE)?;
        Ok(paths)
    }

    /// Whether the certificate at `paths` can be kept for `profile`; any read or parse problem means no.
    fn is_reusable(&self, paths: &CertPaths, profile: &Profile<'_>) -> bool {
        let (Ok(cert_pem), Ok(key_pem)) = (read_pem(&paths.cert), read_pem(&paths.key)) else {
            return false;
        };
        let (Ok(der), Ok(key)) = (pem_to_der(&cert_pem), KeyPair::from_pem(&key_pem)) else {
            return false;
        };
        let Ok((_, cert)) = X509Certificate::from_der(&der) else {
            return false;
        };
        let Ok((_, ca)) = X509Certificate::from_der(&self.cert_der) else {
            return false;
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let validity = cert.validity();
        let signed_by_us = cert.issuer().as_raw() == ca.subject().as_raw()
            && cert.verify_signature(Some(ca.public_key())).is_ok();
        let fresh = validity.not_before.timestamp() <= now
            && validity.not_after.timestamp() - now > RENEW_BEFORE.whole_seconds();
        let key_matches = cert.public_key().subject_public_key.data.as_ref() == key.der_bytes();
        if !(signed_by_us && fresh && key_matches) {
            return false;
        }
        let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
        match profile {
            Profile::Serving { sans } => eku.is_some_and(|e| e.server_auth) && covers(&cert, sans),
            Profile::Client {
                common_name,
                groups,
            } => {
                eku.is_some_and(|e| e.client_auth)
                    && identity_from_name(cert.subject())
                        .is_ok_and(|(user, have)| user == *common_name && have == *groups)
            }
        }
    }
}

/// Parses SAN strings (IP addresses become IP SANs), dropping duplicates and keeping order.
fn parse_sans(name: &str, sans: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut out: Vec<SanType> = Vec::with_capacity(sans.len());
    for s in sans {
        let san = match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if s.is_empty() => {
                return Err(PkiError::InvalidRequest {
                    name: name.to_owned(),
                    reason: "a SAN is empty".into(),
                });
            }
            Err(_) => SanType::DnsName(s.to_ascii_lowercase().try_into().map_err(|e| {
                PkiError::InvalidRequest {
                    name: name.to_owned(),
                    reason: format!("invalid DNS SAN {s:?}: {e}"),
                }
            })?),
        };
        if !out.contains(&san) {
            out.push(san);
        }
    }
    if out.is_empty() {
        return Err(PkiError::InvalidRequest {
            name: name.to_owned(),
            reason: "no SANs requested".into(),
        });
    }
    Ok(out)
}

/// Whether the certificate's SANs include every one of `wanted` (DNS names compared case-insensitively).
fn covers(cert: &X509Certificate<'_>, wanted: &[SanType]) -> bool {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return false;
    };
    let names = &ext.value.general_names;
    wanted.iter().all(|want| {
        names.iter().any(|have| match (want, have) {
            (SanType::DnsName(w), GeneralName::DNSName(h)) => w.as_str().eq_ignore_ascii_case(h),
            (SanType::IpAddress(w), GeneralName::IPAddress(h)) => ip_from_bytes(h) == Some(*w),
            _ => false,
        })
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// The DER of the first certificate in a PEM text.
fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())
}

/// A DER certificate as PEM text with 64-column lines.
fn der_to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `dir/<name>.crt` signed by `ca` for `localhost`, expiring in `days_left` days.
    fn write_serving_expiring_in(ca: &Ca, dir: &Path, name: &str, days_left: i64) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = OffsetDateTime::now_utc() - Duration::days(300);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(days_left);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let paths = CertPaths::in_dir(dir, name);
        write_atomic(&paths.key, key.serialize_pem().as_bytes(), PRIVATE_MODE).unwrap();
        write_atomic(&paths.cert, cert.pem().as_bytes(), PUBLIC_MODE).unwrap();
        cert.der().to_vec()
    }

    #[test]
    fn cert_expiring_within_30_days_is_reissued_and_later_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let sans = vec!["localhost".to_owned()];

        let soon = write_serving_expiring_in(&ca, dir.path(), "soon", 29);
        let paths = ca.issue_serving(dir.path(), "soon", &sans).unwrap();
        assert_ne!(
            pem_to_der(&read_pem(&paths.cert).unwrap())
                .unwrap()
                .as_ref(),
            soon.as_slice()
        );

        let later = write_serving_expiring_in(&ca, dir.path(), "later", 31);
        let paths = ca.issue_serving(dir.path(), "later", &sans).unwrap();
        assert_eq!(
            pem_to_der(&read_pem(&paths.cert).unwrap())
                .unwrap()
                .as_ref(),
            later.as_slice()
        );
    }

    #[test]
    fn der_to_pem_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let pem = der_to_pem(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_to_der(&pem).unwrap().as_ref(), der.as_slice());
    }
}
