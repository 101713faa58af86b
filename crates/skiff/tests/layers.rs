//! Checks the layering rule of the design: a crate depends only on Skiff crates in a lower layer.

use std::collections::HashMap;
use std::process::Command;

/// The layer of each workspace crate (ARCHITECTURE.md's codemap).
fn layers() -> HashMap<&'static str, u8> {
    HashMap::from([
        ("skiff-api", 0),
        ("skiff-store", 0),
        ("skiff-pki", 0),
        ("skiff-registry", 1),
        ("skiff-runtime", 1),
        ("skiff-leaderelection", 1),
        ("skiff-apiserver", 2),
        ("skiff-controllers", 2),
        ("skiff-scheduler", 2),
        ("skiff-kubelet", 2),
        ("skiff-proxy", 2),
        ("skiff-dns", 2),
        ("skiff", 3),
        ("skiff-bench", 4),
    ])
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = layers();
    let mut checked = 0;
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let layer = *layers.get(name).unwrap_or_else(|| panic!("crate {name} has no layer: add it to this test and ARCHITECTURE.md"));
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            if let Some(dep_layer) = layers.get(dep_name) {
                assert!(dep_layer < &layer, "{name} (layer {layer}) must not depend on {dep_name} (layer {dep_layer})");
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "expected to check the workspace's internal dependencies, checked {checked}");
}
