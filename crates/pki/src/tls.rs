//! The server TLS configuration the API server and the kubelet share: their serving certificate, the
//! cluster CA as the trust root of client certificates (optional: a caller without one is anonymous), and
//! ALPN for HTTP/2 and HTTP/1.1. All crypto is ring.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;

use crate::{CertPaths, PkiError, read_cert_chain};

/// Builds a rustls server configuration from PEM files: `cert` (chain) and `key` serve, `client_ca` verifies
/// client certificates. A client without a certificate passes the handshake; one signed by another CA fails it.
pub fn server_tls_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = CertPaths { cert: cert.to_path_buf(), key: key.to_path_buf() }.load_der()?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_cert_chain(client_ca)? {
        roots.add(ca).map_err(|e| PkiError::tls(format!("client CA {}", client_ca.display()), e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::tls("the client certificate verifier", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::tls("the protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| PkiError::tls(format!("the serving certificate {}", cert.display()), e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
