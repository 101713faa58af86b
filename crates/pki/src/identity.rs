//! The Kubernetes identity carried by a client certificate: CN is the user, every O is a group.

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use crate::PkiError;

/// Reads the user (subject CN) and the groups (every subject O, in order) of a DER certificate,
/// the way Kubernetes' x509 authenticator does.
pub fn identity_from_der(cert_der: &[u8]) -> Result<(String, Vec<String>), PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::parse("the client certificate", e))?;
    identity_from_name(cert.subject())
}

pub(crate) fn identity_from_name(name: &X509Name<'_>) -> Result<(String, Vec<String>), PkiError> {
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str()
            .map(str::to_owned)
            .map_err(|e| PkiError::parse("a client certificate subject attribute", e))
    };
    let user = match name.iter_common_name().next() {
        Some(cn) => text(cn)?,
        None => return Err(PkiError::NoCommonName),
    };
    if user.is_empty() {
        return Err(PkiError::NoCommonName);
    }
    let groups = name
        .iter_organization()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((user, groups))
}
