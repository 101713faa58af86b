//! Storage admission (upstream's `PersistentVolumeClaimResize` admission plugin): a claim may ask for more
//! storage only when it is bound and its StorageClass sets `allowVolumeExpansion: true`.

use serde_json::Value;
use skiff_api::ApiError;
use skiff_api::resources::find;

use crate::Registry;

fn storage_bytes(claim: &Value) -> Option<f64> {
    let q = claim["spec"]["resources"]["requests"]["storage"].as_str()?.trim();
    let end = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(end);
    let n: f64 = number.parse().ok()?;
    let binary = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let decimal = ["k", "M", "G", "T", "P", "E"];
    let mult = if suffix.is_empty() {
        1.0
    } else if suffix == "m" {
        1e-3
    } else if let Some(i) = binary.iter().position(|s| *s == suffix) {
        1024f64.powi(i as i32 + 1)
    } else if let Some(i) = decimal.iter().position(|s| *s == suffix) {
        1000f64.powi(i as i32 + 1)
    } else if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
        10f64.powi(exp.parse().ok()?)
    } else {
        return None;
    };
    Some(n * mult)
}

/// Refuses growing `old`'s storage request unless the claim is bound and its class allows expansion.
pub(crate) async fn admit_claim_resize(registry: &Registry, new: &Value, old: &Value) -> Result<(), ApiError> {
    let (Some(new_size), Some(old_size)) = (storage_bytes(new), storage_bytes(old)) else { return Ok(()) };
    if new_size <= old_size {
        return Ok(());
    }
    let name = new["metadata"]["name"].as_str().unwrap_or("");
    let forbidden = |why: &str| ApiError::forbidden(format!("persistentvolumeclaims \"{name}\" is forbidden: {why}"));
    if old["status"]["phase"].as_str() != Some("Bound") {
        return Err(forbidden("Only bound persistent volume claims can be expanded"));
    }
    let class = new["spec"]["storageClassName"].as_str().unwrap_or("");
    let allowed = if class.is_empty() || old["spec"]["storageClassName"].as_str() != Some(class) {
        false
    } else {
        let classes = find("storage.k8s.io", "v1", "storageclasses").expect("storageclasses are served");
        match registry.get(classes, None, class).await {
            Ok(c) => c["allowVolumeExpansion"].as_bool() == Some(true),
            Err(e) if e.code == 404 => false,
            Err(e) => return Err(e),
        }
    };
    if !allowed {
        return Err(forbidden(
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::storage_bytes;
    use serde_json::json;

    #[test]
    fn storage_requests_compare_across_suffixes() {
        let size = |q: &str| storage_bytes(&json!({"spec": {"resources": {"requests": {"storage": q}}}}));
        assert_eq!(size("1Gi"), Some(1073741824.0));
        assert!(size("2G").unwrap() > size("1Gi").unwrap());
        assert_eq!(size("1e3"), Some(1000.0));
        assert_eq!(size("1Zi"), None);
    }
}
