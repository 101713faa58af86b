//! Server-side apply and `metadata.managedFields`: a port of the essentials of
//! sigs.k8s.io/structured-merge-diff (field sets, the merge of an applied configuration, ownership and
//! conflicts) and of k8s.io/apiserver's fieldmanager (managers per manager/operation/apiVersion/
//! subresource, metadata fields never tracked, reset fields of the status subresource, at most ten
//! Update managers, the client-side-apply annotation kept in step for `kubectl`).
//!
//! [`update`] records the fields a create, update or patch changed; [`apply`] merges an applied
//! configuration and answers [`Conflicts`] when it changes another manager's fields.

pub mod path;
pub mod schema;
pub mod set;
pub mod typed;

#[cfg(test)]
mod tests;

use serde_json::{json, Map, Value};

pub use path::{Path, PathElement, path_string};
pub use schema::{InlineLookup, ListType, Node, OpenApiLookup, SchemaLookup, Shape};
pub use set::Set;

use crate::ApiError;

/// The manager whose Update entries collect what older Update managers owned beyond the cap.
pub const ANCIENT_CHANGES: &str = "ancient-changes";
/// Upstream's cap on Update entries (`DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// The annotation client-side `kubectl apply` keeps.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Upstream's limit on `fieldManager`.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// `Apply` or `Update` (Apply sorts first, as upstream's encoding orders them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// What identifies one managedFields entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManagerKey {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
}

impl ManagerKey {
    /// How conflict messages name the manager: `"mgr"`, and for Update entries `"mgr" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: ManagerKey,
    pub time: Option<String>,
    pub fields: Set,
}

/// The managedFields of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Managed {
    pub entries: Vec<Entry>,
}

impl Managed {
    /// Decodes `metadata.managedFields` (absent is empty).
    pub fn decode(obj: &Value) -> Result<Managed, String> {
        let Some(list) = obj.get("metadata").and_then(|m| m.get("managedFields")) else {
            return Ok(Managed::default());
        };
        if list.is_null() {
            return Ok(Managed::default());
        }
        let list = list.as_array().ok_or("metadata.managedFields must be a list")?;
        let mut out = Managed::default();
        for (i, e) in list.iter().enumerate() {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let operation = match s("operation").as_str() {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                other => return Err(format!("metadata.managedFields[{i}].operation: invalid operation {other:?}")),
            };
            if !matches!(s("fieldsType").as_str(), "FieldsV1" | "") {
                return Err(format!("metadata.managedFields[{i}].fieldsType: must be FieldsV1"));
            }
            let fields = match e.get("fieldsV1") {
                Some(f) => Set::from_fields_v1(f).map_err(|m| format!("metadata.managedFields[{i}].fieldsV1: {m}"))?,
                None => Set::new(),
            };
            let key = ManagerKey { manager: s("manager"), operation, api_version: s("apiVersion"), subresource: s("subresource") };
            let time = e.get("time").and_then(Value::as_str).map(str::to_string);
            match out.entries.iter_mut().find(|x| x.key == key) {
                Some(x) => x.fields = x.fields.union(&fields),
                None => out.entries.push(Entry { key, time, fields }),
            }
        }
        Ok(out)
    }

    /// The managedFields list, sorted as upstream sorts it (operation, time, manager, apiVersion,
    /// subresource), without empty entries.
    pub fn encode(&self) -> Value {
        let mut entries: Vec<&Entry> = self.entries.iter().filter(|e| !e.fields.is_empty()).collect();
        entries.sort_by(|a, b| {
            a.key
                .operation
                .cmp(&b.key.operation)
                .then_with(|| seconds(a.time.as_deref()).cmp(&seconds(b.time.as_deref())))
                .then_with(|| a.key.manager.cmp(&b.key.manager))
                .then_with(|| a.key.api_version.cmp(&b.key.api_version))
                .then_with(|| a.key.subresource.cmp(&b.key.subresource))
        });
        Value::Array(
            entries
                .into_iter()
                .map(|e| {
                    let mut m = Map::new();
                    m.insert("manager".into(), json!(e.key.manager));
                    m.insert("operation".into(), json!(e.key.operation.as_str()));
                    m.insert("apiVersion".into(), json!(e.key.api_version));
                    if let Some(t) = &e.time {
                        m.insert("time".into(), json!(t));
                    }
                    m.insert("fieldsType".into(), json!("FieldsV1"));
                    m.insert("fieldsV1".into(), e.fields.to_fields_v1());
                    if !e.key.subresource.is_empty() {
                        m.insert("subresource".into(), json!(e.key.subresource));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(|e| e.fields.is_empty())
    }

    pub fn get(&self, key: &ManagerKey) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == *key)
    }

    fn entry_mut(&mut self, key: &ManagerKey) -> &mut Entry {
        if let Some(i) = self.entries.iter().position(|e| e.key == *key) {
            return &mut self.entries[i];
        }
        self.entries.push(Entry { key: key.clone(), time: None, fields: Set::new() });
        self.entries.last_mut().expect("just pushed")
    }

    fn drop_empty(&mut self) {
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Merges the oldest Update entries into `ancient-changes` until at most
    /// [`MAX_UPDATE_MANAGERS`] remain (upstream's capManagersManager).
    fn cap_updates(&mut self) {
        loop {
            let mut updaters: Vec<usize> = (0..self.entries.len())
                .filter(|i| self.entries[*i].key.operation == Operation::Update)
                .collect();
            if updaters.len() <= MAX_UPDATE_MANAGERS {
                return;
            }
            updaters.sort_by_key(|i| seconds(self.entries[*i].time.as_deref()));
            let Some(&oldest) = updaters.iter().find(|i| self.entries[**i].key.manager != ANCIENT_CHANGES) else {
                return;
            };
            let old = self.entries.remove(oldest);
            let bucket = ManagerKey {
                manager: ANCIENT_CHANGES.into(),
                operation: Operation::Update,
                api_version: old.key.api_version.clone(),
                subresource: String::new(),
            };
            let b = self.entry_mut(&bucket);
            b.fields = b.fields.union(&old.fields);
            if b.time.is_none() || seconds(b.time.as_deref()) < seconds(old.time.as_deref()) {
                b.time = old.time;
            }
        }
    }
}

fn seconds(t: Option<&str>) -> i64 {
    t.and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| t.as_second()).unwrap_or(0)
}

/// Which part of the object a write may change (upstream's reset fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` is not tracked when the resource has a status subresource.
    Main { has_status: bool },
    /// The status subresource: only `status` is tracked.
    Status,
}

/// Who writes, and how.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub manager: &'a str,
    /// The apiVersion of the request (`apps/v1`).
    pub api_version: &'a str,
    pub scope: Scope,
    /// The time to record (RFC 3339).
    pub now: &'a str,
}

impl Request<'_> {
    fn key(&self, operation: Operation) -> ManagerKey {
        ManagerKey {
            manager: self.manager.to_string(),
            operation,
            api_version: self.api_version.to_string(),
            subresource: match self.scope {
                Scope::Status => "status".into(),
                Scope::Main { .. } => String::new(),
            },
        }
    }
}

/// Removes what is never tracked (upstream's StripMetaManager) and the fields the scope resets.
fn strip(set: &Set, scope: Scope) -> Set {
    let f = |s: &str| PathElement::Field(s.to_string());
    let mut s = set.clone();
    for top in ["apiVersion", "kind"] {
        s.remove_prefix(&[f(top)]);
    }
    s.members.remove(&f("metadata"));
    for m in UNTRACKED_METADATA {
        s.remove_prefix(&[f("metadata"), f(m)]);
    }
    match scope {
        Scope::Main { has_status: true } => s.remove_prefix(&[f("status")]),
        Scope::Main { has_status: false } => {}
        Scope::Status => s = s.filter_top(&|pe| *pe == f("status")),
    }
    s
}

const UNTRACKED_METADATA: &[&str] =
    &["name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields", "resourceVersion"];

/// The paths upstream's StripMetaManager removes from every set.
fn untracked_paths() -> Vec<Path> {
    let f = |s: &str| PathElement::Field(s.to_string());
    let mut out = vec![vec![f("apiVersion")], vec![f("kind")], vec![f("metadata")]];
    out.extend(UNTRACKED_METADATA.iter().map(|m| vec![f("metadata"), f(m)]));
    out
}

fn without_managed(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

/// The manager of a non-apply write: `fieldManager`, else the User-Agent up to its first `/` without
/// unprintable characters, at most 128 bytes (upstream's `managerOrUserAgent`).
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: &str) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let prefix = user_agent.split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// Records a create, update or patch by `req.manager` (operation Update) in `new`'s managedFields.
///
/// The base is the managedFields the client sent (when it sent some, on the main resource: that is how
/// kubectl migrates client-side apply ownership), else the live object's. Fields the write added or
/// changed become the manager's and leave every other manager; removed fields leave every manager.
pub fn update(live: Option<&Value>, new: &mut Value, lookup: &dyn SchemaLookup, req: &Request) {
    let sent = Managed::decode(new).ok().filter(|m| !m.is_empty() && req.scope != Scope::Status);
    let mut managed = match sent {
        Some(m) => m,
        None => live.map(|l| Managed::decode(l).unwrap_or_default()).unwrap_or_default(),
    };
    let empty = json!({});
    let live_c = live.map(without_managed).unwrap_or(empty);
    let new_c = without_managed(new);
    let node = Node::root(lookup);
    let cmp = typed::compare(&live_c, &new_c, &node);
    let changed = strip(&cmp.changed(), req.scope);
    let removed = strip(&cmp.removed, req.scope);
    let key = req.key(Operation::Update);
    for e in managed.entries.iter_mut().filter(|e| e.key != key) {
        e.fields = e.fields.difference(&changed).difference(&removed);
    }
    if !changed.is_empty() {
        let e = managed.entry_mut(&key);
        e.fields = e.fields.difference(&removed).union(&changed);
        e.time = Some(req.now.to_string());
    } else if let Some(i) = managed.entries.iter().position(|e| e.key == key) {
        managed.entries[i].fields = managed.entries[i].fields.difference(&removed);
    }
    managed.drop_empty();
    managed.cap_updates();
    set_managed(new, &managed);
}

fn set_managed(obj: &mut Value, managed: &Managed) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["managedFields"] = managed.encode();
}

/// The fields an apply would change that other managers own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<(ManagerKey, Path)>);

impl Conflicts {
    /// Upstream's 409: `Apply failed with 1 conflict: conflict with "mgr" using v1: .data.key`, one
    /// `FieldManagerConflict` cause per field.
    pub fn to_api_error(&self) -> ApiError {
        let causes: Vec<Value> = self
            .0
            .iter()
            .map(|(k, p)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", k.describe()), "field": path_string(p)})
            })
            .collect();
        let message = if let [(k, p)] = self.0.as_slice() {
            format!("Apply failed with 1 conflict: conflict with {}: {}", k.describe(), path_string(p))
        } else {
            let mut lines = Vec::new();
            let mut last: Option<&ManagerKey> = None;
            for (k, p) in &self.0 {
                if last != Some(k) {
                    lines.push(format!("conflicts with {}:", k.describe()));
                    last = Some(k);
                }
                lines.push(format!("- {}", path_string(p)));
            }
            format!("Apply failed with {} conflicts: {}", self.0.len(), lines.join("\n"))
        };
        ApiError { code: 409, reason: "Conflict", message, details: Some(json!({"causes": causes})) }
    }
}

/// Why an apply was refused.
#[derive(Debug)]
pub enum ApplyError {
    Conflicts(Conflicts),
    /// The configuration is not acceptable (400).
    BadRequest(String),
}

impl ApplyError {
    pub fn to_api_error(&self) -> ApiError {
        match self {
            ApplyError::Conflicts(c) => c.to_api_error(),
            ApplyError::BadRequest(m) => ApiError::bad_request(m.clone()),
        }
    }
}

/// Applies `config` by `req.manager` to `live` (`None`: the object does not exist yet) and returns the
/// new object with its managedFields.
///
/// The merged object keeps every live field; fields the manager applied before and no longer applies
/// are removed unless another manager owns them; changing a field another manager owns is a conflict
/// unless `force`, which takes the field over. For the manager `kubectl`, conflicts on fields of the
/// client-side-apply annotation are allowed and the annotation is kept in step with the configuration
/// (upstream's lastAppliedManager and lastAppliedUpdater).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    lookup: &dyn SchemaLookup,
    req: &Request,
    force: bool,
) -> Result<Value, ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::BadRequest("the applied configuration must be an object".into()));
    }
    if config.get("metadata").and_then(|m| m.get("managedFields")).is_some_and(|m| !m.is_null()) {
        return Err(ApplyError::BadRequest("metadata.managedFields must be nil".into()));
    }
    let mut managed = live.map(|l| Managed::decode(l).unwrap_or_default()).unwrap_or_default();
    let empty = json!({});
    let live_c = live.map(without_managed).unwrap_or(empty);
    let node = Node::root(lookup);
    let config_set = strip(&typed::field_set(config, &node), req.scope);
    let mut merged = typed::merge(Some(&live_c), config, &node);
    let key = req.key(Operation::Apply);
    let last = managed.get(&key).map(|e| e.fields.clone()).unwrap_or_default();
    let old_time = managed.get(&key).and_then(|e| e.time.clone());
    managed.entry_mut(&key).fields = config_set;
    if !last.is_empty() {
        let mut keep = managed.entries.iter().fold(Set::new(), |acc, e| acc.union(&e.fields));
        // What is never tracked is never pruned either.
        for p in untracked_paths() {
            keep.insert(&p);
        }
        typed::prune(&mut merged, &last.with_named_fields_as_members(), &keep.with_named_fields_as_members(), &node);
    }
    let cmp = typed::compare(&live_c, &merged, &node);
    let changed = strip(&cmp.changed(), req.scope);
    let removed = strip(&cmp.removed, req.scope);
    let mut conflicts: Vec<(ManagerKey, Set)> = managed
        .entries
        .iter()
        .filter(|e| e.key != key)
        .map(|e| (e.key.clone(), e.fields.intersection(&changed)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    conflicts.sort_by(|a, b| a.0.cmp(&b.0));
    if !conflicts.is_empty() && !force && !allowed_by_last_applied(req.manager, live, &conflicts, &node, req.scope) {
        let list = conflicts.iter().flat_map(|(k, s)| s.paths().into_iter().map(move |p| (k.clone(), p))).collect();
        return Err(ApplyError::Conflicts(Conflicts(list)));
    }
    for e in managed.entries.iter_mut().filter(|e| e.key != key) {
        if let Some((_, c)) = conflicts.iter().find(|(k, _)| *k == e.key) {
            e.fields = e.fields.difference(c);
        }
        e.fields = e.fields.difference(&removed);
    }
    managed.entry_mut(&key).time = if merged == live_c && old_time.is_some() { old_time } else { Some(req.now.to_string()) };
    managed.drop_empty();
    managed.cap_updates();
    if req.manager == "kubectl" && has_last_applied(&merged) {
        let mut applied = config.clone();
        if let Some(a) = applied.get_mut("metadata").and_then(|m| m.get_mut("annotations")).and_then(Value::as_object_mut) {
            a.remove(LAST_APPLIED);
            if a.is_empty() {
                applied["metadata"].as_object_mut().expect("metadata is an object").remove("annotations");
            }
        }
        merged["metadata"]["annotations"][LAST_APPLIED] = json!(applied.to_string());
    }
    set_managed(&mut merged, &managed);
    Ok(merged)
}

fn has_last_applied(obj: &Value) -> bool {
    obj.get("metadata").and_then(|m| m.get("annotations")).and_then(|a| a.get(LAST_APPLIED)).is_some()
}

/// Whether every conflict of an apply by `kubectl` is on a field of the live object's client-side-apply
/// annotation: then the apply takes them over (the upgrade from client-side to server-side apply).
fn allowed_by_last_applied(manager: &str, live: Option<&Value>, conflicts: &[(ManagerKey, Set)], node: &Node, scope: Scope) -> bool {
    if manager != "kubectl" {
        return false;
    }
    let Some(text) = live
        .and_then(|l| l.get("metadata"))
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
    else {
        return false;
    };
    let Ok(last_applied) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let allowed = strip(&typed::field_set(&last_applied, node), scope);
    conflicts.iter().all(|(_, c)| c.difference(&allowed).is_empty())
}
