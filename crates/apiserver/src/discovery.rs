//! Discovery: the aggregated (apidiscovery.k8s.io/v2) and legacy documents for `/api` and `/apis`,
//! rendered from the resource catalog (built-ins and the custom resources CRDs add; rendered again when
//! the catalog changes), served with an ETag so kubectl's cache revalidates cheaply.

use std::sync::{Arc, RwLock};

use serde_json::{json, Value};
use skiff_api::crd::Catalog;
use sha2::{Digest, Sha256};
use skiff_api::resources::ResourceInfo;

use crate::Config;

/// The media type of aggregated discovery, which kubectl requires verbatim in the response.
pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// A resource served without storage (reviews), advertised in discovery.
struct Virtual {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
}

const VIRTUAL: &[Virtual] = &[
    Virtual { group: "authentication.k8s.io", version: "v1", plural: "selfsubjectreviews", kind: "SelfSubjectReview" },
    Virtual { group: "authorization.k8s.io", version: "v1", plural: "selfsubjectaccessreviews", kind: "SelfSubjectAccessReview" },
    Virtual { group: "authorization.k8s.io", version: "v1", plural: "selfsubjectrulesreviews", kind: "SelfSubjectRulesReview" },
];

/// A rendered document and its ETag.
pub struct Doc {
    pub body: Vec<u8>,
    pub etag: String,
}

impl Doc {
    fn new(v: &Value) -> Doc {
        let body = serde_json::to_vec(v).expect("json values serialize");
        let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
        Doc { body, etag }
    }
}

/// Every discovery document, rendered at start.
pub struct Documents {
    pub aggregated_api: Doc,
    pub aggregated_apis: Doc,
    pub legacy_api: Doc,
    pub legacy_apis: Doc,
    /// `(group, version)` → APIResourceList.
    pub resource_lists: Vec<((String, String), Doc)>,
    /// `group` → APIGroup.
    pub groups: Vec<(String, Doc)>,
}

fn all_groups(catalog: &Catalog) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups = catalog.groups();
    for v in VIRTUAL {
        match groups.iter_mut().find(|(g, _)| *g == v.group) {
            Some((_, versions)) if !versions.contains(&v.version) => versions.push(v.version),
            Some(_) => {}
            None => groups.push((v.group, vec![v.version])),
        }
    }
    groups
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        v["subresources"] = r
            .subresources
            .iter()
            .map(|s| json!({"subresource": s.name, "responseKind": {"group": s.group, "version": s.version, "kind": s.kind}, "verbs": s.verbs}))
            .collect();
    }
    v
}

fn aggregated_virtual(v: &Virtual) -> Value {
    json!({
        "resource": v.plural,
        "responseKind": {"group": v.group, "version": v.version, "kind": v.kind},
        "scope": "Cluster",
        "singularResource": v.plural.trim_end_matches('s'),
        "verbs": ["create"],
    })
}

fn aggregated_group(catalog: &Catalog, group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let mut res: Vec<Value> = catalog.in_group_version(group, version).into_iter().map(aggregated_resource).collect();
            res.extend(VIRTUAL.iter().filter(|v| v.group == group && v.version == *version).map(aggregated_virtual));
            json!({"version": version, "resources": res, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn legacy_resources(catalog: &Catalog, group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in catalog.in_group_version(group, version) {
        let mut v = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        list.push(v);
        for s in r.subresources {
            let mut sv = json!({"name": format!("{}/{}", r.plural, s.name), "singularName": "", "namespaced": r.namespaced,
                                "kind": s.kind, "verbs": s.verbs});
            if s.group != r.group || s.version != r.version {
                sv["group"] = json!(s.group);
                sv["version"] = json!(s.version);
            }
            list.push(sv);
        }
    }
    for v in VIRTUAL.iter().filter(|v| v.group == group && v.version == version) {
        list.push(json!({"name": v.plural, "singularName": "", "namespaced": false, "kind": v.kind, "verbs": ["create"]}));
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}

fn legacy_group(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

impl Documents {
    pub fn render(config: &Config, catalog: &Catalog) -> Documents {
        let groups = all_groups(catalog);
        let core = groups.iter().find(|(g, _)| g.is_empty()).map(|(_, v)| v.clone()).unwrap_or_default();
        let named: Vec<&(&str, Vec<&str>)> = groups.iter().filter(|(g, _)| !g.is_empty()).collect();
        let aggregated_api = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [aggregated_group(catalog, "", &core)]});
        let aggregated_apis = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": named.iter().map(|(g, v)| aggregated_group(catalog, g, v)).collect::<Vec<_>>()});
        let legacy_api = json!({"kind": "APIVersions", "versions": core,
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": config.advertise_address}]});
        let legacy_apis = json!({"kind": "APIGroupList", "apiVersion": "v1",
            "groups": named.iter().map(|(g, v)| legacy_group(g, v)).collect::<Vec<_>>()});
        let mut resource_lists = Vec::new();
        let mut group_docs = Vec::new();
        for (g, versions) in &groups {
            for v in versions {
                resource_lists.push(((g.to_string(), v.to_string()), Doc::new(&legacy_resources(catalog, g, v))));
            }
            if !g.is_empty() {
                let mut doc = legacy_group(g, versions);
                doc["kind"] = json!("APIGroup");
                doc["apiVersion"] = json!("v1");
                group_docs.push((g.to_string(), Doc::new(&doc)));
            }
        }
        Documents {
            aggregated_api: Doc::new(&aggregated_api),
            aggregated_apis: Doc::new(&aggregated_apis),
            legacy_api: Doc::new(&legacy_api),
            legacy_apis: Doc::new(&legacy_apis),
            resource_lists,
            groups: group_docs,
        }
    }

    pub fn resource_list(&self, group: &str, version: &str) -> Option<&Doc> {
        self.resource_lists.iter().find(|((g, v), _)| g == group && v == version).map(|(_, d)| d)
    }

    pub fn group(&self, group: &str) -> Option<&Doc> {
        self.groups.iter().find(|(g, _)| g == group).map(|(_, d)| d)
    }
}

/// The discovery documents for the catalog's current generation, rendered again when CRDs change.
pub struct Cache {
    config: Config,
    catalog: Arc<Catalog>,
    current: RwLock<(u64, Arc<Documents>)>,
}

impl Cache {
    pub fn new(config: &Config, catalog: Arc<Catalog>) -> Cache {
        let generation = catalog.generation();
        let docs = Arc::new(Documents::render(config, &catalog));
        Cache { config: config.clone(), catalog, current: RwLock::new((generation, docs)) }
    }

    /// The documents for what is served now.
    pub fn get(&self) -> Arc<Documents> {
        let generation = self.catalog.generation();
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.0 == generation {
                return current.1.clone();
            }
        }
        let docs = Arc::new(Documents::render(&self.config, &self.catalog));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (generation, docs.clone());
        docs
    }
}

/// Whether the client accepts aggregated discovery (`as=APIGroupDiscoveryList` with `v=v2`).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"as=APIGroupDiscoveryList") && params.contains(&"v=v2") && params.contains(&"g=apidiscovery.k8s.io")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_is_recognised_in_any_order() {
        assert!(wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"));
        assert!(wants_aggregated("application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io"));
        assert!(!wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"));
        assert!(!wants_aggregated("application/json, */*"));
    }

    #[test]
    fn documents_list_every_group_and_subresource() {
        let docs = Documents::render(&Config::default(), &Catalog::new());
        let apis: Value = serde_json::from_slice(&docs.aggregated_apis.body).unwrap();
        let names: Vec<&str> = apis["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"apps") && names.contains(&"authorization.k8s.io"));
        let autoscaling = apis["items"].as_array().unwrap().iter().find(|i| i["metadata"]["name"] == "autoscaling").unwrap();
        assert_eq!(autoscaling["versions"][0]["version"], "v2");
        let core: Value = serde_json::from_slice(&docs.resource_list("", "v1").unwrap().body).unwrap();
        assert!(core["resources"].as_array().unwrap().iter().any(|r| r["name"] == "pods/exec"));
        let apps: Value = serde_json::from_slice(&docs.resource_list("apps", "v1").unwrap().body).unwrap();
        let scale = apps["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
        assert_eq!(scale["group"], "autoscaling");
    }
}
