//! The node's registry configuration in k3s's `registries.yaml` format: mirrors (tried in order, then the
//! registry's default endpoint), repository rewrites for mirrors, and per-host credentials and TLS settings.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000", "https://mirror.example.com"]
//!     rewrite: {"^library/(.*)": "mirrored/$1"}
//! configs:
//!   mirror.example.com:
//!     auth: {username: u, password: p}      # or auth: base64(u:p), or identitytoken
//!     tls: {insecure_skip_verify: false, ca_file: /etc/ssl/mirror-ca.pem}
//! ```
//!
//! As in k3s (containerd), the default endpoint is always tried last and rewrites apply to mirror endpoints
//! only; a `"*"` mirror applies to registries that have no mirror of their own. Registries on 127.0.0.0/8,
//! `::1` and `localhost` are spoken to over plain HTTP, as Docker does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// Where the agent reads its registries file, under the data dir.
pub const REGISTRIES_FILE: &str = "agent/etc/registries.yaml";

/// A `registries.yaml` that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid registries configuration{}: {reason}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Invalid {
        path: Option<PathBuf>,
        reason: String,
    },
}

/// The parsed `registries.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// Registry host (`docker.io`, `registry.example.com:5000`, `*`) → its mirrors.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Endpoint host (`mirror.example.com`, `127.0.0.1:5000`) → credentials and TLS settings.
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

/// The mirrors of one registry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Endpoint URLs (`https://host[:port]`, `http://...`; without a scheme, https), tried in order.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regular expression on the repository (`library/busybox`) → replacement (`$1` for groups), applied when
    /// pulling from this registry's mirror endpoints.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// Settings for one endpoint host.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// Credentials, as in Docker's config: a username and password, `auth` (base64 of `user:password`), or an
/// identity token (sent as a bearer token).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
}

/// TLS settings of an endpoint. Client certificates (`cert_file`, `key_file`) are rejected as unsupported.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Credentials resolved for one endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// One place to try pulling an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP (loopback registries, `http://` endpoints) instead of HTTPS.
    pub plain_http: bool,
    /// The repository to ask this endpoint for (rewritten for mirrors).
    pub repository: String,
    /// A mirror from `registries.yaml` (false for the registry's own endpoint).
    pub mirror: bool,
    pub credentials: Option<Credentials>,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
}

impl Endpoint {
    /// `http://host` or `https://host`, for messages.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.host
        )
    }
}

/// Whether a registry host (`127.0.0.1:5000`, `localhost`, `[::1]:5000`) is on the loopback, where Docker
/// allows plain HTTP.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Splits an endpoint URL into (host, plain_http).
fn parse_endpoint(url: &str) -> Result<(String, bool), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(format!("endpoint {url:?} has no host"));
    }
    if !matches!(path.trim_end_matches('/'), "" | "v2") {
        return Err(format!(
            "endpoint {url:?} has the path /{path}: only endpoints at the host's /v2 are supported"
        ));
    }
    let plain_http = match scheme {
        Some("http") => true,
        Some("https") => false,
        Some(other) => {
            return Err(format!(
                "endpoint {url:?} has the scheme {other:?}, expected http or https"
            ));
        }
        None => is_loopback_host(host),
    };
    Ok((host.to_string(), plain_http))
}

impl RegistriesConfig {
    /// Parses and checks a `registries.yaml` document (endpoints, rewrite expressions, credentials).
    pub fn parse(yaml: &str) -> Result<RegistriesConfig, RegistriesError> {
        Self::parse_inner(yaml, None)
    }

    fn parse_inner(yaml: &str, path: Option<&Path>) -> Result<RegistriesConfig, RegistriesError> {
        let invalid = |reason: String| RegistriesError::Invalid {
            path: path.map(Path::to_path_buf),
            reason,
        };
        let config: RegistriesConfig = if yaml.trim().is_empty() {
            RegistriesConfig::default()
        } else {
            serde_saphyr::from_str(yaml).map_err(|e| invalid(e.to_string()))?
        };
        for (registry, mirror) in &config.mirrors {
            for e in &mirror.endpoint {
                parse_endpoint(e).map_err(|r| invalid(format!("mirrors.{registry}: {r}")))?;
            }
            for pattern in mirror.rewrite.keys() {
                regex::Regex::new(pattern).map_err(|e| {
                    invalid(format!("mirrors.{registry}.rewrite: {pattern:?} is not a valid regular expression: {e}"))
                })?;
            }
        }
        for (host, c) in &config.configs {
            if let Some(auth) = &c.auth {
                auth.credentials()
                    .map_err(|r| invalid(format!("configs.{host}.auth: {r}")))?;
            }
            if let Some(tls) = &c.tls
                && (tls.cert_file.is_some() || tls.key_file.is_some())
            {
                return Err(invalid(format!(
                    "configs.{host}.tls: client certificates (cert_file, key_file) are not supported"
                )));
            }
        }
        Ok(config)
    }

    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<RegistriesConfig, RegistriesError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_inner(&text, Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(source) => Err(RegistriesError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads `<data_dir>/agent/etc/registries.yaml` (empty when absent).
    pub fn load_from_data_dir(data_dir: &Path) -> Result<RegistriesConfig, RegistriesError> {
        Self::load(&data_dir.join(REGISTRIES_FILE))
    }

    /// The endpoints to try, in order, for `repository` on `registry` (both as in a normalised reference:
    /// `docker.io`, `library/busybox`): the mirrors, then the registry itself.
    pub fn endpoints(&self, registry: &str, repository: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        if let Some(m) = mirror {
            let repository = rewrite(&m.rewrite, repository);
            for url in &m.endpoint {
                // Checked in parse; a config built in code may still hold a bad URL: skip it with a warning.
                match parse_endpoint(url) {
                    Ok((host, plain_http)) => {
                        out.push(self.endpoint(host, plain_http, repository.clone(), true))
                    }
                    Err(e) => tracing::warn!(registry, error = %e, "skipping a mirror endpoint"),
                }
            }
        }
        let default_host = if registry == "docker.io" {
            "index.docker.io"
        } else {
            registry
        };
        if !out.iter().any(|e| e.host == default_host && !e.mirror) {
            out.push(self.endpoint(
                default_host.to_string(),
                is_loopback_host(default_host),
                repository.to_string(),
                false,
            ));
        }
        out
    }

    fn endpoint(
        &self,
        host: String,
        plain_http: bool,
        repository: String,
        mirror: bool,
    ) -> Endpoint {
        let config = self.configs.get(&host).or_else(|| {
            // docker.io's settings also apply to its default endpoint's host name.
            (host == "index.docker.io")
                .then(|| self.configs.get("docker.io"))
                .flatten()
        });
        let credentials = config
            .and_then(|c| c.auth.as_ref())
            .and_then(|a| a.credentials().ok().flatten());
        let tls = config.and_then(|c| c.tls.clone()).unwrap_or_default();
        Endpoint {
            host,
            plain_http,
            repository,
            mirror,
            credentials,
            insecure_skip_verify: tls.insecure_skip_verify,
            ca_file: tls.ca_file,
        }
    }
}

/// Applies the first matching rewrite (in key order) to the repository.
fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (pattern, replacement) in rules {
        if let Ok(re) = regex::Regex::new(pattern)
            && re.is_match(repository)
        {
            return re.replace(repository, replacement.as_str()).into_owned();
        }
    }
    repository.to_string()
}

impl AuthConfig {
    /// The credentials this entry gives, or `None` when it is empty.
    pub fn credentials(&self) -> Result<Option<Credentials>, String> {
        if let Some(token) = self.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::Bearer(token.clone())));
        }
        if let Some(auth) = self.auth.as_ref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("auth is not valid base64: {e}"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| "auth is not UTF-8 once decoded".to_string())?;
            let (username, password) = text
                .split_once(':')
                .ok_or_else(|| "auth must be the base64 of username:password".to_string())?;
            return Ok(Some(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        match (&self.username, &self.password) {
            (Some(u), p) if !u.is_empty() => Ok(Some(Credentials::Basic {
                username: u.clone(),
                password: p.clone().unwrap_or_default(),
            })),
            (None | Some(_), Some(p)) if !p.is_empty() => {
                Err("a password is given without a username".into())
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S_EXAMPLE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com:8443/v2"
    rewrite:
      "^library/(.*)": "mirrored/$1"
  "*":
    endpoint: ["mirror.example.com"]
configs:
  "mirror.example.com:8443":
    auth:
      username: alice
      password: s3cret
    tls:
      insecure_skip_verify: true
      ca_file: /etc/ssl/mirror.pem
  "mirror.example.com":
    auth:
      auth: Ym9iOmh1bnRlcjI=
  "registry.example.com":
    auth:
      identitytoken: tok
"#;

    #[test]
    fn parses_k3s_registries_yaml() {
        let c = RegistriesConfig::parse(K3S_EXAMPLE).unwrap();
        let docker = &c.mirrors["docker.io"];
        assert_eq!(docker.endpoint.len(), 2);
        assert_eq!(docker.rewrite["^library/(.*)"], "mirrored/$1");
        let tls = c.configs["mirror.example.com:8443"].tls.as_ref().unwrap();
        assert!(tls.insecure_skip_verify);
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(Path::new("/etc/ssl/mirror.pem"))
        );
    }

    #[test]
    fn mirrors_first_with_rewrites_then_the_default_endpoint() {
        let c = RegistriesConfig::parse(K3S_EXAMPLE).unwrap();
        let eps = c.endpoints("docker.io", "library/busybox");
        let summary: Vec<_> = eps
            .iter()
            .map(|e| (e.url(), e.repository.as_str(), e.mirror))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "http://127.0.0.1:5000".to_string(),
                    "mirrored/busybox",
                    true
                ),
                (
                    "https://mirror.example.com:8443".to_string(),
                    "mirrored/busybox",
                    true
                ),
                // Rewrites do not apply to the default endpoint.
                (
                    "https://index.docker.io".to_string(),
                    "library/busybox",
                    false
                ),
            ]
        );
        assert_eq!(eps[0].credentials, None);
        assert_eq!(
            eps[1].credentials,
            Some(Credentials::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert!(eps[1].insecure_skip_verify);

        // The "*" mirror for other registries; `auth` is base64 of user:password.
        let eps = c.endpoints("registry.example.com", "team/app");
        assert_eq!(eps[0].url(), "https://mirror.example.com");
        assert_eq!(
            eps[0].credentials,
            Some(Credentials::Basic {
                username: "bob".into(),
                password: "hunter2".into()
            })
        );
        assert_eq!(eps[1].url(), "https://registry.example.com");
        assert_eq!(eps[1].credentials, Some(Credentials::Bearer("tok".into())));
    }

    #[test]
    fn loopback_registries_use_plain_http() {
        let c = RegistriesConfig::default();
        for host in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
        ] {
            let eps = c.endpoints(host, "busybox");
            assert_eq!(eps.len(), 1);
            assert!(eps[0].plain_http, "{host}");
        }
        for host in [
            "registry.example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
        ] {
            assert!(!c.endpoints(host, "busybox")[0].plain_http, "{host}");
        }
    }

    #[test]
    fn rejects_invalid_files_with_the_reason() {
        for (yaml, want) in [
            ("mirrors: [1, 2]", "invalid registries configuration"),
            ("mirror:\n  docker.io: {}", "mirror"),
            (
                "mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]",
                "scheme \"ftp\"",
            ),
            (
                "mirrors:\n  docker.io:\n    endpoint: [\"https://x/some/path\"]",
                "path",
            ),
            (
                "mirrors:\n  docker.io:\n    rewrite: {\"(\": x}",
                "not a valid regular expression",
            ),
            (
                "configs:\n  x:\n    auth: {auth: \"!!\"}",
                "not valid base64",
            ),
            (
                "configs:\n  x:\n    auth: {password: p}",
                "without a username",
            ),
            (
                "configs:\n  x:\n    tls: {cert_file: /c, key_file: /k}",
                "client certificates",
            ),
        ] {
            let e = RegistriesConfig::parse(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn load_reads_the_data_dir_file_and_tolerates_its_absence() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            RegistriesConfig::load_from_data_dir(dir.path()).unwrap(),
            RegistriesConfig::default()
        );
        let path = dir.path().join(REGISTRIES_FILE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:1\"]\n",
        )
        .unwrap();
        let c = RegistriesConfig::load_from_data_dir(dir.path()).unwrap();
        assert_eq!(c.mirrors["docker.io"].endpoint, vec!["http://127.0.0.1:1"]);
        std::fs::write(&path, "mirrors: 3").unwrap();
        let e = RegistriesConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
