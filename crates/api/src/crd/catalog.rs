//! The resource catalog: the built-in table plus the resources CustomResourceDefinitions add at run time.
//!
//! The rest of Skiff works with `&'static ResourceInfo` (the built-in table is a `static`). A custom
//! resource version gets its `ResourceInfo` by leaking one allocation (`Box::leak`) per distinct
//! description (names, scope, version, subresources, storage version): re-establishing a CRD with the same
//! names reuses the entry, so the memory kept is bounded by the number of distinct CRD name/version
//! combinations a process ever serves (a few hundred bytes each), not by the number of updates.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::resources::{self, ResourceInfo, Subresource, ALL_VERBS, RESOURCES};

/// A printer column of a custom resource version (`additionalPrinterColumns`).
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// The paths of the scale subresource (`subresources.scale`).
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served version of a custom resource: what the registry, the Table printer, discovery and
/// OpenAPI need beyond its `ResourceInfo`.
#[derive(Clone, Debug)]
pub struct CustomVersion {
    pub info: &'static ResourceInfo,
    /// The name of the CustomResourceDefinition (`<plural>.<group>`).
    pub crd_name: String,
    /// `openAPIV3Schema` of this version (`None` only for CRDs that predate v1; v1 requires one).
    pub schema: Option<Value>,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// Whether this version is the storage version.
    pub storage: bool,
    /// Whether `metadata.deletionTimestamp` is set on the CRD: objects may not be created any more.
    pub terminating: bool,
}

/// What a custom resource's leaked `ResourceInfo` is made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceDesc {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: bool,
    pub storage_version: String,
}

#[derive(Default)]
struct Inner {
    versions: Vec<Arc<CustomVersion>>,
    leaked: HashMap<ResourceDesc, &'static ResourceInfo>,
    /// Bumped on every change, so discovery and OpenAPI know when to render again.
    generation: u64,
}

/// Built-in resources and the custom resources currently served. One per API server, shared (in an
/// `Arc`) by the registry and the HTTP layer.
#[derive(Default)]
pub struct Catalog {
    inner: RwLock<Inner>,
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_strs(v: &[String]) -> &'static [&'static str] {
    Box::leak(v.iter().map(|s| leak_str(s)).collect::<Vec<_>>().into_boxed_slice())
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The `ResourceInfo` for a description, leaked the first time this description is seen.
    pub fn intern(&self, d: &ResourceDesc) -> &'static ResourceInfo {
        if let Some(r) = self.read().leaked.get(d) {
            return r;
        }
        let mut inner = self.write();
        if let Some(r) = inner.leaked.get(d) {
            return r;
        }
        let (group, version, kind) = (leak_str(&d.group), leak_str(&d.version), leak_str(&d.kind));
        let mut subs = Vec::new();
        if d.status {
            subs.push(Subresource { name: "status", group, version, kind, verbs: &["get", "patch", "update"] });
        }
        if d.scale {
            subs.push(Subresource { name: "scale", group: "autoscaling", version: "v1", kind: "Scale", verbs: &["get", "patch", "update"] });
        }
        let plural = leak_str(&d.plural);
        let info: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
            group,
            version,
            kind,
            plural,
            singular: leak_str(&d.singular),
            namespaced: d.namespaced,
            verbs: ALL_VERBS,
            short_names: leak_strs(&d.short_names),
            categories: leak_strs(&d.categories),
            subresources: Box::leak(subs.into_boxed_slice()),
            storage_group: group,
            storage_plural: plural,
            storage_version: leak_str(&d.storage_version),
            custom: true,
        }));
        inner.leaked.insert(d.clone(), info);
        info
    }

    /// Serves `versions` for the CRD `crd_name`, replacing what it served before.
    pub fn set(&self, crd_name: &str, versions: Vec<CustomVersion>) {
        let mut inner = self.write();
        let mut kept: Vec<Arc<CustomVersion>> = inner.versions.iter().filter(|v| v.crd_name != crd_name).cloned().collect();
        kept.extend(versions.into_iter().map(Arc::new));
        inner.versions = kept;
        inner.generation += 1;
    }

    /// Stops serving the CRD `crd_name`.
    pub fn remove(&self, crd_name: &str) {
        let mut inner = self.write();
        let before = inner.versions.len();
        inner.versions.retain(|v| v.crd_name != crd_name);
        if inner.versions.len() != before {
            inner.generation += 1;
        }
    }

    /// A number that changes whenever the served custom resources change.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Finds a served resource by group, version and plural: built-ins first, then custom resources.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
        resources::find(group, version, plural).or_else(|| {
            self.read().versions.iter().find(|v| v.info.group == group && v.info.version == version && v.info.plural == plural).map(|v| v.info)
        })
    }

    /// Finds a served resource by group, version and kind.
    pub fn find_by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
        resources::find_by_kind(group, version, kind).or_else(|| {
            self.read().versions.iter().find(|v| v.info.group == group && v.info.version == version && v.info.kind == kind).map(|v| v.info)
        })
    }

    /// The custom-resource details of `r` (`None` for built-ins and resources no longer served).
    pub fn custom(&self, r: &ResourceInfo) -> Option<Arc<CustomVersion>> {
        if !r.custom {
            return None;
        }
        self.read().versions.iter().find(|v| v.info.group == r.group && v.info.version == r.version && v.info.plural == r.plural).cloned()
    }

    /// Every served custom resource version.
    pub fn custom_versions(&self) -> Vec<Arc<CustomVersion>> {
        self.read().versions.clone()
    }

    /// The custom resource versions of one CRD.
    pub fn versions_of(&self, crd_name: &str) -> Vec<Arc<CustomVersion>> {
        self.read().versions.iter().filter(|v| v.crd_name == crd_name).cloned().collect()
    }

    /// Every served resource: the built-in table, then custom resources.
    pub fn all(&self) -> Vec<&'static ResourceInfo> {
        let mut out: Vec<&'static ResourceInfo> = RESOURCES.iter().collect();
        out.extend(self.read().versions.iter().map(|v| v.info));
        out
    }

    /// The served groups with their versions in preference order: built-in groups first (table order),
    /// then custom groups, whose versions are ordered as upstream's version priority
    /// (GA > beta > alpha > other, higher numbers first).
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out = resources::groups();
        let mut custom: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for v in &self.read().versions {
            if out.iter().any(|(g, _)| *g == v.info.group) {
                continue;
            }
            match custom.iter_mut().find(|(g, _)| *g == v.info.group) {
                Some((_, versions)) if !versions.contains(&v.info.version) => versions.push(v.info.version),
                Some(_) => {}
                None => custom.push((v.info.group, vec![v.info.version])),
            }
        }
        custom.sort_by(|a, b| a.0.cmp(b.0));
        for (_, versions) in &mut custom {
            versions.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then(a.cmp(b)));
        }
        out.extend(custom);
        out
    }

    /// The resources served at one group-version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&'static ResourceInfo> {
        let mut out: Vec<&'static ResourceInfo> = resources::in_group_version(group, version).collect();
        let mut custom: Vec<&'static ResourceInfo> =
            self.read().versions.iter().filter(|v| v.info.group == group && v.info.version == version).map(|v| v.info).collect();
        custom.sort_by(|a, b| a.plural.cmp(b.plural));
        out.extend(custom);
        out
    }
}

/// Upstream's version ordering for Kubernetes-style versions (`v2` > `v1` > `v1beta2` > `v1beta1` >
/// `v1alpha1` > anything else).
pub fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else { return (0, 0, 0) };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u64>() else { return (0, 0, 0) };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    for (prefix, rank) in [("beta", 2u8), ("alpha", 1u8)] {
        if let Some(n) = tail.strip_prefix(prefix)
            && let Ok(minor) = n.parse::<u64>()
        {
            return (rank, major, minor);
        }
    }
    (0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(version: &str) -> ResourceDesc {
        ResourceDesc {
            group: "stable.example.com".into(),
            version: version.into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            singular: "crontab".into(),
            namespaced: true,
            short_names: vec!["ct".into()],
            categories: vec!["all".into()],
            status: true,
            scale: false,
            storage_version: "v1".into(),
        }
    }

    #[test]
    fn interning_reuses_one_leaked_entry_per_description() {
        let c = Catalog::new();
        let a = c.intern(&desc("v1"));
        let b = c.intern(&desc("v1"));
        assert!(std::ptr::eq(a, b));
        assert!(a.custom && a.has_subresource("status") && !a.has_subresource("scale"));
        assert_eq!(a.key(Some("ns"), "x"), "/registry/stable.example.com/crontabs/ns/x");
    }

    #[test]
    fn set_and_remove_change_what_is_found() {
        let c = Catalog::new();
        let v1 = c.intern(&desc("v1"));
        let v2 = c.intern(&desc("v2"));
        let cv = |info| CustomVersion { info, crd_name: "crontabs.stable.example.com".into(), schema: None, columns: vec![],
            scale: None, storage: false, terminating: false };
        let g0 = c.generation();
        c.set("crontabs.stable.example.com", vec![cv(v1), cv(v2)]);
        assert!(c.generation() > g0);
        assert!(c.find("stable.example.com", "v2", "crontabs").is_some());
        assert!(c.find("", "v1", "pods").is_some());
        let groups = c.groups();
        assert_eq!(groups.last().unwrap(), &("stable.example.com", vec!["v2", "v1"]));
        c.remove("crontabs.stable.example.com");
        assert!(c.find("stable.example.com", "v1", "crontabs").is_none());
        assert!(c.custom(v1).is_none());
    }

    #[test]
    fn versions_sort_as_upstream() {
        let mut v = vec!["v1alpha1", "v1", "foo", "v2beta1", "v2", "v1beta2", "v1beta1"];
        v.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)));
        assert_eq!(v, vec!["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}
