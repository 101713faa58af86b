//! Writing a kubeconfig with inline certificate data, in the layout k3s writes.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::PkiError;
use crate::files::{PRIVATE_MODE, ensure_dir, write_atomic};

/// Writes a kubeconfig whose cluster, user and context are all named `default` (like k3s), with the CA,
/// client certificate and client key inline as base64. The file gets mode 0600 and is replaced atomically;
/// missing parent directories are created.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<(), PkiError> {
    let text = render(server_url, ca_pem, client_cert_pem, client_key_pem);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent)?;
    }
    write_atomic(path, text.as_bytes(), PRIVATE_MODE)
}

fn render(server_url: &str, ca_pem: &str, client_cert_pem: &str, client_key_pem: &str) -> String {
    let ca = STANDARD.encode(ca_pem);
    let cert = STANDARD.encode(client_cert_pem);
    let key = STANDARD.encode(client_key_pem);
    let server = yaml_scalar(server_url);
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
"
    )
}

/// `value` as a YAML scalar: plain when it is URL-like and unambiguous, otherwise double-quoted
/// (a JSON string is a valid YAML double-quoted scalar).
fn yaml_scalar(value: &str) -> String {
    let plain = value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/.-_".contains(c))
        && !value.contains(": ");
    if plain {
        value.to_owned()
    } else {
        serde_json::Value::from(value).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_is_plain_when_safe_and_quoted_otherwise() {
        assert_eq!(
            yaml_scalar("https://127.0.0.1:6443"),
            "https://127.0.0.1:6443"
        );
        assert_eq!(yaml_scalar("https://[::1]:6443"), "\"https://[::1]:6443\"");
        assert_eq!(yaml_scalar("https://h:1 # x"), "\"https://h:1 # x\"");
    }

    #[test]
    fn quoted_server_url_reads_back_unchanged() {
        let text = render("https://[::1]:6443", "ca", "cert", "key");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "https://[::1]:6443"
        );
    }
}
