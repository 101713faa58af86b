//! The error type of the certificate authority.

use std::path::PathBuf;

/// Everything that can go wrong while creating, loading or issuing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory operation failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `read` or `write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// rcgen could not generate a key or sign a certificate.
    #[error("failed to {action}: {source}")]
    Generate {
        /// What was being done, e.g. `sign the serving certificate apiserver`.
        action: String,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// Rewriting the DER of a certificate failed.
    #[error("failed to {action}: {reason}")]
    Der {
        /// What was being done.
        action: String,
        /// Why it failed.
        reason: String,
    },
    /// A PEM file, key or certificate could not be parsed.
    #[error("failed to parse {what}: {reason}")]
    Parse {
        /// What was being parsed, usually with its path.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The CA directory holds only one of `ca.crt` and `ca.key`.
    #[error(
        "failed to load the cluster ca: {} exists but {} is missing (restore it, or remove both to create a new ca)",
        found.display(),
        missing.display()
    )]
    IncompleteCa {
        /// The file that exists.
        found: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The CA key does not belong to the CA certificate.
    #[error("failed to load the cluster ca: {} does not match {}", key.display(), cert.display())]
    CaKeyMismatch {
        /// The certificate.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },
    /// A requested certificate field is not acceptable.
    #[error("failed to issue {name}: {reason}")]
    InvalidRequest {
        /// The file stem of the requested certificate.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused TLS material (a CA it cannot trust, a key that does not fit the certificate).
    #[error("failed to build the TLS configuration with {what}: {reason}")]
    Tls {
        /// What was being used, usually with its path.
        what: String,
        /// Why rustls refused it.
        reason: String,
    },
    /// A client certificate carries no subject common name, so it names no user.
    #[error("failed to read the identity of a client certificate: the subject has no common name")]
    NoCommonName,
}

impl PkiError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        PkiError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, reason: impl ToString) -> Self {
        PkiError::Parse {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn tls(what: impl Into<String>, reason: impl ToString) -> Self {
        PkiError::Tls {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn generate(action: impl Into<String>, source: rcgen::Error) -> Self {
        PkiError::Generate {
            action: action.into(),
            source,
        }
    }
}
