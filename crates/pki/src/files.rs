//! File helpers: atomic writes with a given mode, reads with path-carrying errors, PEM loading.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::PkiError;

/// Mode of private key files and kubeconfigs.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Mode of certificate files.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

/// Where a certificate and its private key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The PEM certificate (`<name>.crt`).
    pub cert: PathBuf,
    /// The PEM PKCS#8 private key (`<name>.key`, mode 0600).
    pub key: PathBuf,
}

impl CertPaths {
    /// The paths `<dir>/<name>.crt` and `<dir>/<name>.key`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        CertPaths {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// Reads the certificate PEM text.
    pub fn read_cert_pem(&self) -> Result<String, PkiError> {
        read_pem(&self.cert)
    }

    /// Reads the private key PEM text.
    pub fn read_key_pem(&self) -> Result<String, PkiError> {
        read_pem(&self.key)
    }

    /// Reads the certificate chain and the private key as DER, ready for a rustls config.
    pub fn load_der(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let certs = read_cert_chain(&self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(self.read_key_pem()?.as_bytes())
            .map_err(|e| PkiError::parse(format!("private key {}", self.key.display()), e))?;
        Ok((certs, key))
    }
}

/// Reads a PEM (or any UTF-8) file.
pub fn read_pem(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::io("read", path, e))
}

/// Reads every certificate of a PEM file as DER; fails when there is none.
pub fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read_pem(path)?;
    let what = || format!("certificate {}", path.display());
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::parse(what(), e))?;
    if certs.is_empty() {
        return Err(PkiError::parse(what(), "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Creates `dir` (mode 0700 for the directories it creates) if it does not exist.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PkiError::io("create directory", dir, e))
}

/// Writes `data` to `path` with `mode`: a temporary file in the same directory, synced, then renamed
/// over `path`, so readers see the old or the new content and never a partial file.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let file_name = path.file_name().ok_or_else(|| {
        PkiError::io(
            "write",
            path,
            std::io::Error::other("the path has no file name"),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);

    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` only applies to a new file; a leftover temp file keeps its old mode otherwise.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(data)?;
        file.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(PkiError::io("write", &tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        PkiError::io("rename into place", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_sets_mode_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

        write_atomic(&path, b"new", PRIVATE_MODE).unwrap();

        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("secret")]);
    }

    #[test]
    fn read_errors_name_the_path() {
        let err = read_pem(Path::new("/nonexistent/skiff/ca.key")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("failed to read /nonexistent/skiff/ca.key: "),
            "{msg}"
        );
    }

    #[test]
    fn read_cert_chain_rejects_a_file_without_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.crt");
        fs::write(&path, "not pem").unwrap();
        let msg = read_cert_chain(&path).unwrap_err().to_string();
        assert!(msg.contains("no CERTIFICATE block"), "{msg}");
    }
}
