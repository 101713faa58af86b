//! Priority admission (upstream's `Priority` admission plugin): a new pod's `priorityClassName` (or the
//! `globalDefault` class when it names none) becomes `spec.priority` and `spec.preemptionPolicy`.

use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::resources::find;

use crate::Registry;

/// The two classes every cluster has, with the values upstream reserves for them.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
];

fn forbidden(pod: &Value, why: String) -> ApiError {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    ApiError::forbidden(format!("pods \"{name}\" is forbidden: {why}"))
}

/// Resolves the pod's priority; a class that does not exist, or a `spec.priority` that differs from the
/// class, is refused as upstream refuses it.
pub(crate) async fn admit_pod(registry: &Registry, pod: &mut Value) -> Result<(), ApiError> {
    let classes = find("scheduling.k8s.io", "v1", "priorityclasses").expect("priorityclasses are served");
    let name = pod["spec"]["priorityClassName"].as_str().unwrap_or("").to_string();
    let class = if name.is_empty() {
        let page = registry.list(classes, None, None, None, &|c| c["globalDefault"].as_bool() == Some(true)).await?;
        page.items.into_iter().min_by_key(|c| c["value"].as_i64().unwrap_or(0))
    } else {
        match registry.get(classes, None, &name).await {
            Ok(c) => Some(c),
            Err(e) if e.code == 404 => return Err(forbidden(pod, format!("no PriorityClass with name {name} was found"))),
            Err(e) => return Err(e),
        }
    };
    let priority = class.as_ref().and_then(|c| c["value"].as_i64()).unwrap_or(0);
    if let Some(given) = pod["spec"]["priority"].as_i64()
        && given != priority
    {
        return Err(forbidden(pod, format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        )));
    }
    let Some(spec) = pod["spec"].as_object_mut() else { return Ok(()) };
    spec.insert("priority".into(), json!(priority));
    let Some(class) = class else { return Ok(()) };
    if name.is_empty() {
        spec.insert("priorityClassName".into(), class["metadata"]["name"].clone());
    }
    if let Some(policy) = class["preemptionPolicy"].as_str() {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
            && given != policy
        {
            let msg = format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            );
            return Err(forbidden(pod, msg));
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use skiff_api::resources::find;

    use crate::{Registry, RegistryConfig, WriteOptions};

    fn pod(name: &str, spec_extra: serde_json::Value) -> serde_json::Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        for (k, v) in spec_extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    }

    #[tokio::test]
    async fn pods_get_the_priority_of_their_class() {
        let reg = Registry::new(Arc::new(skiff_store::memory::MemoryBackend::new()), None, RegistryConfig::default());
        let nss = find("", "v1", "namespaces").unwrap();
        reg.create(nss, None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}), WriteOptions::default())
            .await
            .unwrap();
        let pods = find("", "v1", "pods").unwrap();
        let classes = find("scheduling.k8s.io", "v1", "priorityclasses").unwrap();
        let create = |p| reg.create(pods, Some("default"), p, WriteOptions::default());

        let plain = create(pod("plain", json!({}))).await.unwrap();
        assert_eq!(plain["spec"]["priority"], 0);
        assert!(plain["spec"].get("priorityClassName").is_none());

        let err = create(pod("nope", json!({"priorityClassName": "nope"}))).await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (403, "pods \"nope\" is forbidden: no PriorityClass with name nope was found"));

        for (name, value, default, policy) in [("high", 1000, false, "Never"), ("base", 5, true, "PreemptLowerPriority")] {
            let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                            "value": value, "globalDefault": default, "preemptionPolicy": policy});
            reg.create(classes, None, pc, WriteOptions::default()).await.unwrap();
        }
        let high = create(pod("high", json!({"priorityClassName": "high"}))).await.unwrap();
        assert_eq!((high["spec"]["priority"].clone(), high["spec"]["preemptionPolicy"].clone()), (json!(1000), json!("Never")));
        let defaulted = create(pod("defaulted", json!({}))).await.unwrap();
        assert_eq!((defaulted["spec"]["priority"].clone(), defaulted["spec"]["priorityClassName"].clone()), (json!(5), json!("base")));
        let err = create(pod("mismatch", json!({"priorityClassName": "high", "priority": 7}))).await.unwrap_err();
        assert_eq!(err.code, 403);
        assert!(err.message.contains("the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000"), "{}", err.message);
        let same = create(pod("same", json!({"priorityClassName": "high", "priority": 1000}))).await.unwrap();
        assert_eq!(same["spec"]["priority"], 1000);
    }
}
