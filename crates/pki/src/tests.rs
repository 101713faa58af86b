//! Tests of the public API: CA lifecycle, serving and client certificates, reuse rules, kubeconfig.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn der_of(path: &Path) -> Vec<u8> {
    read_cert_chain(path).unwrap().remove(0).to_vec()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Asserts that the certificate at `path` is signed by `ca`.
fn assert_signed_by(path: &Path, ca: &Ca) {
    let der = der_of(path);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("signature verifies with the ca key");
    assert_eq!(cert.issuer().to_string(), ca_cert.subject().to_string());
}

fn sans_of(der: &[u8]) -> (BTreeSet<String>, BTreeSet<IpAddr>) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let ext = cert
        .subject_alternative_name()
        .unwrap()
        .expect("has a SAN extension");
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(d) => {
                dns.insert((*d).to_owned());
            }
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                    n => panic!("bad IP SAN length {n}"),
                };
                ips.insert(ip);
            }
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    (dns, ips)
}

#[test]
fn ca_is_created_then_reloaded_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("server/tls");
    let ca = Ca::load_or_create(&tls).unwrap();
    assert_eq!(
        ca.paths(),
        &CertPaths {
            cert: tls.join("ca.crt"),
            key: tls.join("ca.key")
        }
    );
    assert_eq!(mode(&ca.paths().key), 0o600);
    assert_eq!(fs::read_to_string(&ca.paths().cert).unwrap(), ca.cert_pem());

    let (_, cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let stamp: i64 = cn
        .strip_prefix("skiff-ca@")
        .expect("CN is skiff-ca@<time>")
        .parse()
        .unwrap();
    assert!((stamp - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 600);
    assert!(cert.is_ca());
    cert.verify_signature(None).expect("self-signed");
    let validity = cert.validity();
    let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
    assert!((3649..=3651).contains(&days), "{days} days");
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    ); // id-ecPublicKey

    let key_before = fs::read(&ca.paths().key).unwrap();
    let again = Ca::load_or_create(&tls).unwrap();
    assert_eq!(again.cert_pem(), ca.cert_pem());
    assert_eq!(again.cert_der(), ca.cert_der());
    assert_eq!(fs::read(&again.paths().key).unwrap(), key_before);

    // The reloaded CA signs certificates that verify against the original certificate.
    let paths = again.issue_client(&tls, "probe", "probe", &[]).unwrap();
    assert_signed_by(&paths.cert, &ca);
}

#[test]
fn ca_with_one_file_missing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    fs::remove_file(&ca.paths().cert).unwrap();
    let err = Ca::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
    assert!(err.to_string().contains("ca.crt is missing"), "{err}");
    assert!(ca.paths().key.exists(), "the key is not replaced");
}

#[test]
fn ca_key_from_another_ca_is_rejected() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ca_a = Ca::load_or_create(a.path()).unwrap();
    let ca_b = Ca::load_or_create(b.path()).unwrap();
    fs::copy(&ca_b.paths().key, &ca_a.paths().key).unwrap();
    let err = Ca::load_or_create(a.path()).unwrap_err();
    assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err}");
}

#[test]
fn unreadable_ca_key_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    fs::write(&ca.paths().key, "garbage").unwrap();
    let msg = Ca::load_or_create(dir.path()).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "failed to parse ca key {}",
            ca.paths().key.display()
        )),
        "{msg}"
    );
}

#[test]
fn serving_cert_has_the_sans_and_verifies_against_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let node_ip: IpAddr = "192.168.1.20".parse().unwrap();
    let sans = apiserver_sans(
        "cluster.local",
        "node-a",
        &[node_ip],
        "10.43.0.1".parse().unwrap(),
    );
    let paths = ca.issue_serving(dir.path(), "apiserver", &sans).unwrap();
    assert_eq!(
        paths,
        CertPaths {
            cert: dir.path().join("apiserver.crt"),
            key: dir.path().join("apiserver.key")
        }
    );
    assert_eq!(mode(&paths.key), 0o600);
    assert_signed_by(&paths.cert, &ca);

    let der = der_of(&paths.cert);
    let (dns, ips) = sans_of(&der);
    let want_dns: BTreeSet<String> = strings(&[
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "node-a",
    ])
    .into_iter()
    .collect();
    let want_ips: BTreeSet<IpAddr> = ["127.0.0.1", "::1", "192.168.1.20", "10.43.0.1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(dns, want_dns);
    assert_eq!(ips, want_ips);

    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!cert.is_ca());
    let validity = cert.validity();
    let days = (validity.not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp())
        / 86_400;
    assert!((364..=365).contains(&days), "{days} days left");

    // The key file holds the key of the certificate, loadable for rustls.
    let (chain, _key) = paths.load_der().unwrap();
    assert_eq!(chain[0].as_ref(), der.as_slice());
}

#[test]
fn serving_cert_is_reused_unless_a_san_is_added_or_the_ca_changes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(&dir.path().join("ca")).unwrap();
    let sans = strings(&["localhost", "127.0.0.1", "node-a"]);
    let first = ca.issue_serving(dir.path(), "apiserver", &sans).unwrap();
    let cert1 = fs::read(&first.cert).unwrap();
    let key1 = fs::read(&first.key).unwrap();

    // Same request, a subset, or a different order and case: kept as is.
    ca.issue_serving(dir.path(), "apiserver", &sans).unwrap();
    ca.issue_serving(dir.path(), "apiserver", &strings(&["NODE-A", "localhost"]))
        .unwrap();
    assert_eq!(fs::read(&first.cert).unwrap(), cert1);
    assert_eq!(fs::read(&first.key).unwrap(), key1);

    // A new SAN: re-issued with a new key, and the new SAN is in it.
    let more = strings(&["localhost", "127.0.0.1", "node-a", "10.0.0.7"]);
    ca.issue_serving(dir.path(), "apiserver", &more).unwrap();
    let cert2 = fs::read(&first.cert).unwrap();
    assert_ne!(cert2, cert1);
    assert_ne!(fs::read(&first.key).unwrap(), key1);
    let (_, ips) = sans_of(&der_of(&first.cert));
    assert!(ips.contains(&"10.0.0.7".parse::<IpAddr>().unwrap()));

    // Another CA: the certificate it did not sign is replaced by one it did.
    let other = Ca::load_or_create(&dir.path().join("other-ca")).unwrap();
    other.issue_serving(dir.path(), "apiserver", &more).unwrap();
    assert_ne!(fs::read(&first.cert).unwrap(), cert2);
    assert_signed_by(&first.cert, &other);

    // A key that does not belong to the certificate: re-issued.
    let cert3 = fs::read(&first.cert).unwrap();
    let stray = ca.issue_serving(dir.path(), "stray", &more).unwrap();
    fs::copy(&stray.key, &first.key).unwrap();
    other.issue_serving(dir.path(), "apiserver", &more).unwrap();
    assert_ne!(fs::read(&first.cert).unwrap(), cert3);
    let (chain, _) = first.load_der().unwrap();
    let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
    let key = rcgen::KeyPair::from_pem(&first.read_key_pem().unwrap()).unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        rcgen::PublicKeyData::der_bytes(&key)
    );
}

#[test]
fn client_identity_round_trips_for_any_number_of_groups() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let cases: &[(&str, &[&str])] = &[
        (ADMIN_USER, &[ADMIN_GROUP]),
        ("alice", &["system:masters", "devs"]),
        ("bob", &["a", "b", "c", "d", "e"]),
        ("system:node:node-a", &[]),
        ("ünïcode user", &["grüppe"]),
    ];
    for (i, (user, groups)) in cases.iter().enumerate() {
        let groups = strings(groups);
        let paths = ca
            .issue_client(dir.path(), &format!("client{i}"), user, &groups)
            .unwrap();
        assert_eq!(mode(&paths.key), 0o600);
        assert_signed_by(&paths.cert, &ca);
        let der = der_of(&paths.cert);
        assert_eq!(
            identity_from_der(&der).unwrap(),
            ((*user).to_owned(), groups.clone())
        );

        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(cert.subject_alternative_name().unwrap().is_none());
        // The key is the certificate's key.
        let key = rcgen::KeyPair::from_pem(&paths.read_key_pem().unwrap()).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            rcgen::PublicKeyData::der_bytes(&key)
        );
    }
}

#[test]
fn admin_subject_reads_like_k3s() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let paths = ca
        .issue_client(
            dir.path(),
            "admin",
            ADMIN_USER,
            &strings(&[ADMIN_GROUP, "devs"]),
        )
        .unwrap();
    let der = der_of(&paths.cert);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        cert.subject().to_string(),
        "O=system:masters, O=devs, CN=system:admin"
    );
}

#[test]
fn client_cert_is_reused_unless_the_subject_changes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let groups = strings(&["system:masters", "devs"]);
    let paths = ca
        .issue_client(dir.path(), "admin", ADMIN_USER, &groups)
        .unwrap();
    let first = fs::read(&paths.cert).unwrap();

    ca.issue_client(dir.path(), "admin", ADMIN_USER, &groups)
        .unwrap();
    assert_eq!(fs::read(&paths.cert).unwrap(), first);

    // Group order is part of the identity Kubernetes sees, so a reordering re-issues.
    let reordered = strings(&["devs", "system:masters"]);
    ca.issue_client(dir.path(), "admin", ADMIN_USER, &reordered)
        .unwrap();
    let second = fs::read(&paths.cert).unwrap();
    assert_ne!(second, first);
    assert_eq!(
        identity_from_der(&der_of(&paths.cert)).unwrap().1,
        reordered
    );

    ca.issue_client(dir.path(), "admin", "someone-else", &reordered)
        .unwrap();
    assert_ne!(fs::read(&paths.cert).unwrap(), second);
    assert_eq!(
        identity_from_der(&der_of(&paths.cert)).unwrap().0,
        "someone-else"
    );

    // A serving certificate under the same name is not a client certificate: re-issued.
    ca.issue_serving(dir.path(), "admin", &strings(&["localhost"]))
        .unwrap();
    ca.issue_client(dir.path(), "admin", ADMIN_USER, &groups)
        .unwrap();
    assert_eq!(
        identity_from_der(&der_of(&paths.cert)).unwrap(),
        (ADMIN_USER.to_owned(), groups)
    );
}

#[test]
fn invalid_requests_are_rejected_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let err = ca
        .issue_client(dir.path(), "admin", "", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "failed to issue admin: the common name (user) is empty"
    );
    let err = ca
        .issue_client(dir.path(), "admin", "u", &strings(&[""]))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "failed to issue admin: a group is empty");
    let err = ca
        .issue_serving(dir.path(), "api", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "failed to issue api: no SANs requested");
    let err = ca
        .issue_serving(dir.path(), "api", &strings(&["bad name ☃"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("failed to issue api: invalid DNS SAN"),
        "{err}"
    );
    let err = ca
        .issue_serving(dir.path(), "../escape", &strings(&["a"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("plain file name"), "{err}");
}

#[test]
fn identity_needs_a_common_name() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "devs");
    let cert = params.self_signed(&key).unwrap();
    assert!(matches!(
        identity_from_der(cert.der()),
        Err(PkiError::NoCommonName)
    ));
    assert!(matches!(
        identity_from_der(b"not der"),
        Err(PkiError::Parse { .. })
    ));
}

#[test]
fn apiserver_sans_follow_the_cluster_domain_and_drop_duplicates() {
    let sans = apiserver_sans(
        "example.org.",
        "localhost",
        &["127.0.0.1".parse().unwrap()],
        "10.96.0.1".parse().unwrap(),
    );
    assert_eq!(
        sans,
        strings(&[
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.example.org",
            "localhost",
            "127.0.0.1",
            "::1",
            "10.96.0.1",
        ])
    );
}

#[test]
fn kubeconfig_has_inline_data_parses_as_yaml_and_is_private() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let admin = ca
        .issue_client(dir.path(), "admin", ADMIN_USER, &strings(&[ADMIN_GROUP]))
        .unwrap();
    let cert_pem = admin.read_cert_pem().unwrap();
    let key_pem = admin.read_key_pem().unwrap();
    let path = dir.path().join("etc/kubeconfig.yaml");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "stale").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    write_kubeconfig(
        &path,
        "https://127.0.0.1:6443",
        ca.cert_pem(),
        &cert_pem,
        &key_pem,
    )
    .unwrap();
    assert_eq!(mode(&path), 0o600);

    let text = fs::read_to_string(&path).unwrap();
    for field in [
        "certificate-authority-data:",
        "client-certificate-data:",
        "client-key-data:",
    ] {
        assert!(text.contains(field), "missing {field} in\n{text}");
    }
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let b64 = |v: &serde_json::Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["kind"], "Config");
    assert_eq!(doc["current-context"], "default");
    assert_eq!(doc["clusters"][0]["name"], "default");
    assert_eq!(
        doc["clusters"][0]["cluster"]["server"],
        "https://127.0.0.1:6443"
    );
    assert_eq!(
        b64(&doc["clusters"][0]["cluster"]["certificate-authority-data"]),
        ca.cert_pem()
    );
    assert_eq!(
        doc["contexts"][0],
        serde_json::json!({"name": "default", "context": {"cluster": "default", "user": "default"}})
    );
    assert_eq!(doc["users"][0]["name"], "default");
    assert_eq!(
        b64(&doc["users"][0]["user"]["client-certificate-data"]),
        cert_pem
    );
    assert_eq!(b64(&doc["users"][0]["user"]["client-key-data"]), key_pem);
    let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("kubeconfig.yaml")]);
}
