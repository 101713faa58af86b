//! Encryption of Secrets at rest with AES-GCM, in Kubernetes' stored format
//! `k8s:enc:aesgcm:v1:<key name>:<12-byte nonce><ciphertext+tag>`, with key rotation: the first key
//! encrypts, every key decrypts, and plain (unencrypted) values are still read.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "k8s:enc:aesgcm:v1:";

/// Errors of loading keys and of decrypting stored values.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("failed to read encryption keys from {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("failed to write encryption keys to {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("encryption key file {path} is malformed: {detail}")]
    Malformed { path: String, detail: String },
    #[error("stored value is encrypted with unknown key {0:?}")]
    UnknownKey(String),
    #[error("failed to decrypt a stored value with key {0:?}")]
    Decrypt(String),
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    /// Keys in order: the first encrypts new writes.
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    name: String,
    /// 32 bytes, base64.
    secret: String,
}

/// The set of AES-256-GCM keys.
pub struct Encryptor {
    keys: Vec<(String, Aes256Gcm)>,
}

impl Encryptor {
    /// Loads `path`, creating it with one fresh key (`key1`) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, EncryptionError> {
        let shown = path.display().to_string();
        if !path.exists() {
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let file = KeyFile { keys: vec![KeyEntry { name: "key1".into(), secret: STANDARD.encode(secret) }] };
            let text = serde_json::to_string_pretty(&file).expect("key file serializes");
            write_private(path, text.as_bytes()).map_err(|source| EncryptionError::Write { path: shown.clone(), source })?;
        }
        let text = std::fs::read_to_string(path).map_err(|source| EncryptionError::Read { path: shown.clone(), source })?;
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| EncryptionError::Malformed { path: shown.clone(), detail: e.to_string() })?;
        Self::from_keys(file.keys.iter().map(|k| (k.name.as_str(), k.secret.as_str())))
            .map_err(|detail| EncryptionError::Malformed { path: shown, detail })
    }

    /// Builds an encryptor from (name, base64 secret) pairs; the first encrypts.
    pub fn from_keys<'a>(keys: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut out = Vec::new();
        for (name, secret) in keys {
            let bytes = STANDARD.decode(secret).map_err(|e| format!("key {name:?}: {e}"))?;
            if bytes.len() != 32 {
                return Err(format!("key {name:?} must be 32 bytes, is {}", bytes.len()));
            }
            if name.is_empty() || name.contains(':') {
                return Err(format!("key name {name:?} must be non-empty and contain no ':'"));
            }
            out.push((name.to_string(), Aes256Gcm::new_from_slice(&bytes).expect("32-byte key")));
        }
        if out.is_empty() {
            return Err("no keys".into());
        }
        Ok(Encryptor { keys: out })
    }

    /// Encrypts a value with the first key.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let (name, cipher) = &self.keys[0];
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher.encrypt(Nonce::from_slice(&nonce), plain).expect("aes-gcm encryption does not fail");
        let mut out = Vec::with_capacity(PREFIX.len() + name.len() + 1 + 12 + sealed.len());
        out.extend_from_slice(PREFIX.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a stored value; values without the prefix are returned as they are.
    pub fn decrypt(&self, stored: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else {
            return Ok(stored.to_vec());
        };
        let colon = rest.iter().position(|b| *b == b':').ok_or_else(|| EncryptionError::UnknownKey(String::new()))?;
        let name = String::from_utf8_lossy(&rest[..colon]).to_string();
        let payload = &rest[colon + 1..];
        let (_, cipher) = self.keys.iter().find(|(n, _)| *n == name).ok_or_else(|| EncryptionError::UnknownKey(name.clone()))?;
        if payload.len() < 12 {
            return Err(EncryptionError::Decrypt(name));
        }
        cipher.decrypt(Nonce::from_slice(&payload[..12]), &payload[12..]).map_err(|_| EncryptionError::Decrypt(name))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn round_trip_and_prefix() {
        let k = key(1);
        let e = Encryptor::from_keys([("key1", k.as_str())].into_iter()).unwrap();
        let sealed = e.encrypt(b"{\"data\":1}");
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert!(!sealed.windows(8).any(|w| w == b"\"data\":1"));
        assert_eq!(e.decrypt(&sealed).unwrap(), b"{\"data\":1}");
        assert_eq!(e.decrypt(b"plain").unwrap(), b"plain");
    }

    #[test]
    fn rotation_reads_old_key_and_writes_new() {
        let (k1, k2) = (key(1), key(2));
        let old = Encryptor::from_keys([("key1", k1.as_str())].into_iter()).unwrap();
        let sealed = old.encrypt(b"x");
        let rotated = Encryptor::from_keys([("key2", k2.as_str()), ("key1", k1.as_str())].into_iter()).unwrap();
        assert_eq!(rotated.decrypt(&sealed).unwrap(), b"x");
        assert!(rotated.encrypt(b"y").starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        let without = Encryptor::from_keys([("key2", k2.as_str())].into_iter()).unwrap();
        assert!(matches!(without.decrypt(&sealed), Err(EncryptionError::UnknownKey(n)) if n == "key1"));
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(3);
        let e = Encryptor::from_keys([("k", k.as_str())].into_iter()).unwrap();
        let mut sealed = e.encrypt(b"secret");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(e.decrypt(&sealed), Err(EncryptionError::Decrypt(_))));
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = std::env::temp_dir().join(format!("skiff-enc-test-{}", std::process::id()));
        let path = dir.join("keys.json");
        let _ = std::fs::remove_dir_all(&dir);
        let a = Encryptor::load_or_create(&path).unwrap();
        let b = Encryptor::load_or_create(&path).unwrap();
        assert_eq!(b.decrypt(&a.encrypt(b"z")).unwrap(), b"z");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
