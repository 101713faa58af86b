//! The generic object store: Kubernetes objects as JSON over a revisioned [`Backend`], with the rules
//! every write follows (server-set metadata, defaulting, validation, status and generation handling,
//! finalizers and graceful deletion, namespace lifecycle, Service address allocation, Secret encryption).
//!
//! Objects stay `serde_json::Value` from request to storage so that fields newer than the compiled
//! Kubernetes types survive; typed checks happen in validation only.

pub mod allocator;
pub mod convert;
pub mod custom;
pub mod encryption;
pub mod priority;
mod storage;
mod rawjson;
pub mod strategy;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::{ApiError, FieldError};
use skiff_store::{Backend, EventKind, ListOptions, Revision, StoreError};

pub use allocator::Ipv4Cidr;
pub use encryption::Encryptor;

/// What the registry needs to know about the cluster.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// The range cluster IPs are allocated from (`10.43.0.0/16`).
    pub service_cidr: Ipv4Cidr,
    /// The range node ports are allocated from (`30000-32767`).
    pub node_port_range: (u16, u16),
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { service_cidr: "10.43.0.0/16".parse().expect("valid cidr"), node_port_range: (30000, 32767) }
    }
}

/// Options of a write.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run every step but do not store.
    pub dry_run: bool,
}

/// Options of a delete (from `DeleteOptions`).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// `propagationPolicy` of a delete: what happens to the object's dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// The `orphan` finalizer: the garbage collector removes the owner references from dependents first.
    Orphan,
    /// Deleted at once; the garbage collector deletes the dependents afterwards.
    Background,
    /// The `foregroundDeletion` finalizer: the garbage collector deletes the dependents first.
    Foreground,
}

/// The finalizer of orphan propagation.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// The finalizer of foreground propagation.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Upstream's `DefaultGarbageCollectionPolicy`: batch/v1 Jobs orphan their pods when a delete names no
/// policy (kept for backwards compatibility); everything else is deleted in the background.
fn default_propagation(r: &ResourceInfo) -> Propagation {
    if r.group == "batch" && r.version == "v1" && r.plural == "jobs" { Propagation::Orphan } else { Propagation::Background }
}

/// Upstream's `deletionFinalizersForGarbageCollection`: the object's finalizers with `orphan` and
/// `foregroundDeletion` set as the delete asks (an explicit policy, else the object's own GC finalizer,
/// else the resource's default). `Some` only when the list changes.
fn gc_finalizers(r: &ResourceInfo, obj: &Value, propagation: Option<Propagation>) -> Option<Vec<Value>> {
    let current: Vec<Value> = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    let has = |f: &str| current.iter().any(|v| v == f);
    let policy = propagation.unwrap_or_else(|| {
        if has(FINALIZER_ORPHAN) {
            Propagation::Orphan
        } else if has(FINALIZER_FOREGROUND) {
            Propagation::Foreground
        } else {
            default_propagation(r)
        }
    });
    let mut new: Vec<Value> = current.iter().filter(|v| *v != FINALIZER_ORPHAN && *v != FINALIZER_FOREGROUND).cloned().collect();
    match policy {
        Propagation::Orphan => new.push(json!(FINALIZER_ORPHAN)),
        Propagation::Foreground => new.push(json!(FINALIZER_FOREGROUND)),
        Propagation::Background => {}
    }
    let as_set = |v: &[Value]| v.iter().filter_map(Value::as_str).map(str::to_string).collect::<HashSet<_>>();
    if as_set(&current) == as_set(&new) { None } else { Some(new) }
}

/// What a delete did.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Value),
    /// The object is terminating (finalizers or a grace period); this is its current state.
    Pending(Value),
}

/// A page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: String,
    /// The token for the next page, empty when this is the last one.
    pub continue_token: String,
}

/// A page of a list as stored JSON, for [`Registry::list_raw`].
#[derive(Debug)]
pub struct RawPage {
    /// Each object's JSON with `metadata.resourceVersion` set.
    pub items: Vec<Vec<u8>>,
    pub resource_version: String,
    pub continue_token: String,
}

/// The type of a watch event, as in `{"type": "ADDED", ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of an object, with the state before it when known.
#[derive(Clone, Debug)]
pub struct ObjectEvent {
    pub kind: EventType,
    pub object: Value,
    pub previous: Option<Value>,
    pub revision: Revision,
}

/// The object store.
pub struct Registry {
    backend: Arc<dyn Backend>,
    encryptor: Option<Arc<Encryptor>>,
    config: RegistryConfig,
    /// Serializes Service address allocation.
    service_lock: tokio::sync::Mutex<()>,
    /// Built-in resources and those CustomResourceDefinitions add (shared with the API server).
    catalog: Arc<skiff_api::crd::Catalog>,
}

/// Maps a storage error to the API error a client sees.
pub fn store_error(r: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(_) => ApiError::not_found(r.group, r.plural, name),
        StoreError::AlreadyExists(_) => ApiError::already_exists(r.group, r.plural, name),
        StoreError::Conflict { .. } => ApiError::conflict(r.group, r.plural, name),
        StoreError::Compacted { requested, compacted } => {
            ApiError::expired(format!("too old resource version: {requested} ({compacted})"))
        }
        StoreError::FutureRevision { requested, current } => ApiError::timeout(format!(
            "Too large resource version: {requested}, current resource version: {current}"
        )),
        StoreError::Closed => ApiError::service_unavailable("the storage backend is shutting down"),
        StoreError::Backend(m) => ApiError::internal(format!("storage backend failed: {m}")),
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).expect("valid time").to_string()
}

fn rfc3339_in(seconds: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(now + seconds).expect("valid time").to_string()
}

/// Random suffix for `generateName`, from the alphabet Kubernetes uses.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn is_secret(r: &ResourceInfo) -> bool {
    r.storage_group.is_empty() && r.storage_plural == "secrets"
}

/// Metadata fields only the server sets.
const SERVER_FIELDS: &[&str] =
    &["uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"];

/// managedFields as the API server computed them (`skiff_api::managedfields`): an empty list is
/// dropped; when `new` has none at all (an internal write), `old`'s are kept.
fn keep_managed_fields(new: &mut Value, old: Option<&Value>) {
    let Some(m) = new["metadata"].as_object_mut() else { return };
    match m.get("managedFields") {
        Some(Value::Array(list)) if !list.is_empty() => {}
        Some(_) => {
            m.remove("managedFields");
        }
        None => {
            if let Some(previous) = old.and_then(|o| o["metadata"].get("managedFields")) {
                m.insert("managedFields".into(), previous.clone());
            }
        }
    }
}

impl Registry {
    pub fn new(backend: Arc<dyn Backend>, encryptor: Option<Encryptor>, config: RegistryConfig) -> Self {
        Registry {
            backend,
            encryptor: encryptor.map(Arc::new),
            config,
            service_lock: tokio::sync::Mutex::new(()),
            catalog: Arc::new(skiff_api::crd::Catalog::new()),
        }
    }

    /// The resource catalog: built-ins plus the custom resources currently served.
    pub fn catalog(&self) -> &Arc<skiff_api::crd::Catalog> {
        &self.catalog
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The store's current revision as a resourceVersion string.
    pub async fn current_revision(&self) -> Result<Revision, ApiError> {
        self.backend.current_revision().await.map_err(|e| ApiError::internal(e.to_string()))
    }

    fn encode(&self, r: &ResourceInfo, obj: &Value) -> Vec<u8> {
        let mut obj = obj.clone();
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let bytes = serde_json::to_vec(&obj).expect("json values serialize");
        match (&self.encryptor, is_secret(r)) {
            (Some(enc), true) => enc.encrypt(&bytes),
            _ => bytes,
        }
    }

    fn decode(&self, r: &ResourceInfo, bytes: &[u8], revision: Revision) -> Result<Value, ApiError> {
        decode_value(self.encryptor.as_deref(), r, bytes, revision)
    }

    /// Reads one object.
    pub async fn get(&self, r: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let key = r.key(namespace, name);
        match self.backend.get(&key).await.map_err(|e| store_error(r, name, e))? {
            Some(kv) => self.decode(r, &kv.value, kv.mod_revision),
            None => Err(ApiError::not_found(r.group, r.plural, name)),
        }
    }

    fn prefix(r: &ResourceInfo, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if r.namespaced => format!("{}{ns}/", r.key_prefix()),
            _ => r.key_prefix(),
        }
    }

    /// Lists objects, filtered by `keep`, a page of at most `limit` at a time.
    pub async fn list(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<&str>,
        keep: &(dyn Fn(&Value) -> bool + Sync),
    ) -> Result<ListPage, ApiError> {
        let (items, resource_version, continue_token) =
            self.list_map(r, namespace, limit, continue_token, &|o| keep(&o).then_some(o)).await?;
        Ok(ListPage { items, resource_version, continue_token })
    }

    /// Lists objects, keeping what `map` makes of each (`None` drops it), so a caller that needs only
    /// part of each object (a Table row) never holds every object at once. Returns the kept items, the
    /// list's resourceVersion and the continue token.
    pub async fn list_map<T>(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<&str>,
        map: &(dyn Fn(Value) -> Option<T> + Sync),
    ) -> Result<(Vec<T>, String, String), ApiError> {
        let prefix = Self::prefix(r, namespace);
        let mut start_after = self.start_after(continue_token, &prefix).await?;
        let limit = limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        let mut revision = 0;
        loop {
            let want = limit.map(|l| l - items.len());
            let page = self
                .backend
                .list(&ListOptions { prefix: prefix.clone(), start_after: start_after.clone(), limit: want })
                .await
                .map_err(|e| store_error(r, "", e))?;
            if revision == 0 {
                revision = page.revision;
            }
            let last_key = page.items.last().map(|kv| kv.key.clone());
            for kv in page.items {
                if let Some(item) = map(self.decode(r, &kv.value, kv.mod_revision)?) {
                    items.push(item);
                }
            }
            let full = limit.is_some_and(|l| items.len() >= l);
            if !page.more || last_key.is_none() {
                return Ok((items, revision.to_string(), String::new()));
            }
            start_after = last_key;
            if full {
                let token = encode_continue(start_after.as_deref().unwrap_or(""), &prefix, revision);
                return Ok((items, revision.to_string(), token));
            }
        }
    }

    /// Lists stored objects as JSON bytes, `resourceVersion` spliced in, without decoding them: the
    /// fast path for lists that need no filtering, conversion or printing. `None` when `r` is served in
    /// a version other than its stored one (those are converted object by object).
    pub async fn list_raw(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Option<RawPage>, ApiError> {
        if convert::needs_conversion(r) {
            return Ok(None);
        }
        let prefix = Self::prefix(r, namespace);
        let start_after = self.start_after(continue_token, &prefix).await?;
        let limit = limit.filter(|l| *l > 0);
        let page = self
            .backend
            .list(&ListOptions { prefix: prefix.clone(), start_after, limit })
            .await
            .map_err(|e| store_error(r, "", e))?;
        let mut items = Vec::with_capacity(page.items.len());
        for kv in &page.items {
            let bytes = plaintext(self.encryptor.as_deref(), r, &kv.value)?;
            let spliced = rawjson::with_resource_version(&bytes, kv.mod_revision)
                .ok_or_else(|| ApiError::internal(format!("stored object {} is not a JSON object with metadata", kv.key)))?;
            items.push(spliced);
        }
        let continue_token = match (page.more, page.items.last()) {
            (true, Some(last)) => encode_continue(&last.key, &prefix, page.revision),
            _ => String::new(),
        };
        Ok(Some(RawPage { items, resource_version: page.revision.to_string(), continue_token }))
    }

    /// The key a continue token resumes after (`None` without a token); 410 once the token's revision
    /// has been compacted, as upstream answers (the client then lists again from the start).
    async fn start_after(&self, token: Option<&str>, prefix: &str) -> Result<Option<String>, ApiError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let (start, rev) = decode_continue(token, prefix)?;
        let compacted = self.backend.compacted_revision().await.map_err(|e| ApiError::internal(e.to_string()))?;
        if rev < compacted {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        Ok(Some(start))
    }

    async fn check_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        let ns_res = resources::find("", "v1", "namespaces").expect("namespaces are served");
        match self.get(ns_res, None, namespace).await {
            Ok(ns) => {
                if ns["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null())
                    || ns["status"]["phase"] == "Terminating"
                {
                    Err(ApiError::forbidden(format!(
                        "unable to create new content in namespace {namespace} because it is being terminated"
                    ))
                    .with_cause("NamespaceTerminating", namespace, "metadata.namespace"))
                } else {
                    Ok(())
                }
            }
            Err(e) if e.code == 404 => Err(ApiError::not_found("", "namespaces", namespace)),
            Err(e) => Err(e),
        }
    }

    /// Creates an object. `namespace` is the namespace from the URL, already checked against the body.
    pub async fn create(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        mut obj: Value,
        opts: WriteOptions,
    ) -> Result<Value, ApiError> {
        ensure_metadata(&mut obj)?;
        let meta = obj["metadata"].as_object_mut().expect("metadata is an object");
        for f in SERVER_FIELDS {
            meta.remove(*f);
        }
        keep_managed_fields(&mut obj, None);
        let meta = obj["metadata"].as_object_mut().expect("metadata is an object");
        let has_name = meta.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        if !has_name {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let name = format!("{prefix}{}", random_suffix());
                    meta.insert("name".into(), json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        r.group,
                        r.kind,
                        "",
                        &[FieldError::required_msg("metadata.name", "name or generateName is required")],
                    ));
                }
            }
        }
        match namespace {
            Some(ns) if r.namespaced => {
                meta.insert("namespace".into(), json!(ns));
            }
            _ => {
                meta.remove("namespace");
            }
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        let name = name_of(&obj).to_string();

        if r.namespaced
            && let Some(ns) = namespace
        {
            self.check_namespace(ns).await?;
        }
        strategy::normalize(r, &mut obj);
        skiff_api::defaults::apply_defaults(r, &mut obj);
        strategy::prepare_for_create(r, &mut obj);
        let custom_errors = custom::prepare_for_create(&self.catalog, r, &mut obj)?;
        if r.storage_group.is_empty() && r.storage_plural == "pods" {
            priority::admit_pod(self, &mut obj).await?;
        }
        if r.storage_group == "batch" && r.storage_plural == "jobs" {
            skiff_api::defaults::generate_job_selector(&mut obj);
        }
        let mut errors = skiff_api::validation::validate(r, &obj);
        errors.extend(custom_errors);
        let _guard = if r.storage_group.is_empty() && r.storage_plural == "services" && errors.is_empty() {
            let guard = self.service_lock.lock().await;
            errors.extend(self.allocate_service(&mut obj, None).await?);
            Some(guard)
        } else {
            None
        };
        if !errors.is_empty() {
            return Err(ApiError::invalid(r.group, r.kind, &name, &errors));
        }
        let obj = convert::to_storage(r, obj);
        if opts.dry_run {
            return Ok(convert::to_served(r, obj));
        }
        let key = r.key(namespace, &name);
        let kv = self.backend.create(&key, self.encode(r, &obj)).await.map_err(|e| store_error(r, &name, e))?;
        let mut out = convert::to_served(r, obj);
        out["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        Ok(out)
    }

    /// Replaces an object (PUT). With `status` the status subresource is written: only `status` changes.
    pub async fn update(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        new: Value,
        status: bool,
        opts: WriteOptions,
    ) -> Result<Value, ApiError> {
        let old = self.get(r, namespace, name).await?;
        self.update_from(r, namespace, name, &old, new, status, opts).await
    }

    /// Replaces `old` (read by the caller) with `new`, compare-and-swap on `old`'s resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_from(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        old: &Value,
        mut new: Value,
        status: bool,
        opts: WriteOptions,
    ) -> Result<Value, ApiError> {
        ensure_metadata(&mut new)?;
        let old_rv = old["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
        if let Some(rv) = new["metadata"].get("resourceVersion").and_then(Value::as_str)
            && !rv.is_empty()
            && rv != old_rv
        {
            return Err(ApiError::conflict(r.group, r.plural, name));
        }
        if let Some(uid) = new["metadata"].get("uid").and_then(Value::as_str)
            && !uid.is_empty()
            && Some(uid) != old["metadata"]["uid"].as_str()
        {
            return Err(ApiError::conflict_msg(
                r.group,
                r.plural,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", old["metadata"]["uid"].as_str().unwrap_or("")),
            ));
        }
        let custom_errors = custom::prepare_for_update(&self.catalog, r, &mut new, old, status)?;
        let mut new = convert::to_storage(r, new);
        let old_stored = convert::to_storage(r, old.clone());
        if status {
            strategy::prepare_for_status_update(&mut new, &old_stored);
        }
        // Server-owned metadata comes from the old object.
        for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            match old_stored["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        keep_managed_fields(&mut new, Some(&old_stored));
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("selfLink");
            m.insert("name".into(), json!(name));
            match namespace {
                Some(ns) if r.namespaced => m.insert("namespace".into(), json!(ns)),
                _ => m.remove("namespace"),
            };
        }
        if !status {
            let r_storage = storage_resource(r);
            strategy::drop_type_dependent_fields(r_storage, &mut new, &old_stored);
            strategy::normalize(r_storage, &mut new);
            skiff_api::defaults::apply_defaults(r_storage, &mut new);
            strategy::prepare_for_update(r_storage, &mut new, &old_stored);
        }
        let r_storage = storage_resource(r);
        let mut errors = skiff_api::validation::validate(r_storage, &new);
        errors.extend(skiff_api::validation::validate_update(r_storage, &new, &old_stored));
        if errors.is_empty() && !status && r_storage.storage_group.is_empty() && r_storage.storage_plural == "persistentvolumeclaims" {
            storage::admit_claim_resize(self, &new, &old_stored).await?;
        }
        errors.extend(custom_errors);
        let _guard = if r.storage_group.is_empty() && r.storage_plural == "services" && errors.is_empty() && !status {
            let guard = self.service_lock.lock().await;
            errors.extend(self.allocate_service(&mut new, Some(&old_stored)).await?);
            Some(guard)
        } else {
            None
        };
        if !errors.is_empty() {
            return Err(ApiError::invalid(r.group, r.kind, name, &errors));
        }
        // A terminating object whose last finalizer was removed is deleted now.
        let terminating = old_stored["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null());
        let finalizers_empty = new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        let old_rev: Revision = old_rv.parse().unwrap_or(0);
        let key = r.key(namespace, name);
        if terminating && finalizers_empty && !status {
            if opts.dry_run {
                return Ok(convert::to_served(r, new));
            }
            let kv = self.backend.delete(&key, Some(old_rev)).await.map_err(|e| store_error(r, name, e))?;
            let mut out = convert::to_served(r, new);
            out["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
            return Ok(out);
        }
        let mut unchanged_probe = new.clone();
        unchanged_probe["metadata"]["resourceVersion"] = json!(old_rv);
        if unchanged_probe == old_stored || opts.dry_run {
            let mut out = convert::to_served(r, new);
            out["metadata"]["resourceVersion"] = json!(old_rv);
            return Ok(out);
        }
        let kv = self.backend.update(&key, self.encode(r, &new), old_rev).await.map_err(|e| store_error(r, name, e))?;
        let mut out = convert::to_served(r, new);
        out["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        Ok(out)
    }

    /// Read-modify-write: applies `change` to the current object and writes the result, retrying on
    /// conflicts when the change does not pin a resourceVersion itself.
    #[allow(clippy::too_many_arguments)]
    pub async fn guaranteed_update(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        status: bool,
        opts: WriteOptions,
        change: &(dyn Fn(&Value) -> Result<Value, ApiError> + Sync),
    ) -> Result<Value, ApiError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let old = self.get(r, namespace, name).await?;
            let mut new = change(&old)?;
            let pinned = new["metadata"].get("resourceVersion").and_then(Value::as_str).is_some_and(|rv| {
                !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str()
            });
            if pinned {
                return Err(ApiError::conflict(r.group, r.plural, name));
            }
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            match self.update_from(r, namespace, name, &old, new, status, opts).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && attempts < 8 => continue,
                other => return other,
            }
        }
    }

    /// Deletes an object, honouring finalizers, preconditions and (for pods on a node) grace periods, with
    /// the resource's default propagation.
    pub async fn delete(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        self.delete_propagating(r, namespace, name, opts, None).await
    }

    /// `delete` with a `propagationPolicy`: `Orphan` and `Foreground` mark the object terminating with the
    /// `orphan` or `foregroundDeletion` finalizer for the garbage collector; `Background` deletes at once.
    pub async fn delete_propagating(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        propagation: Option<Propagation>,
    ) -> Result<Deleted, ApiError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.delete_once(r, namespace, name, opts, propagation).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && attempts < 8
                    && opts.precondition_resource_version.is_none() => continue,
                other => return other,
            }
        }
    }

    async fn delete_once(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        propagation: Option<Propagation>,
    ) -> Result<Deleted, ApiError> {
        let old = self.get(r, namespace, name).await?;
        let meta = &old["metadata"];
        if let Some(uid) = &opts.precondition_uid
            && meta["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::conflict_msg(r.group, r.plural, name, &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta["uid"].as_str().unwrap_or(""))));
        }
        if let Some(rv) = &opts.precondition_resource_version
            && meta["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::conflict_msg(r.group, r.plural, name, &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta["resourceVersion"].as_str().unwrap_or(""))));
        }
        let rev: Revision = meta["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        let key = r.key(namespace, name);
        let terminating = meta.get("deletionTimestamp").is_some_and(|v| !v.is_null());
        let is_namespace = r.storage_group.is_empty() && r.storage_plural == "namespaces";

        if is_namespace {
            return self.delete_namespace(r, name, old, opts).await;
        }
        let old = if custom::is_crd(r) && !terminating { custom::mark_crd_terminating(old) } else { old };
        let meta = &old["metadata"];
        let gc = gc_finalizers(r, &old, propagation);
        let has_finalizers = match &gc {
            Some(f) => !f.is_empty(),
            None => meta["finalizers"].as_array().is_some_and(|f| !f.is_empty()),
        };
        if has_finalizers {
            if terminating && gc.is_none() {
                return Ok(Deleted::Pending(old));
            }
            let mut marked = old.clone();
            if let Some(f) = gc {
                marked["metadata"]["finalizers"] = json!(f);
            }
            if !terminating {
                marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            return self.write_marked(r, &key, marked, rev, opts).await.map(Deleted::Pending);
        }
        let is_pod = r.storage_group.is_empty() && r.storage_plural == "pods";
        if is_pod {
            let on_node = old["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
            let finished = matches!(old["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
            let grace = opts
                .grace_period_seconds
                .or_else(|| old["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                .max(0);
            let current_grace = meta["deletionGracePeriodSeconds"].as_i64();
            // Graceful deletion: the node agent stops the containers, then deletes with grace 0.
            if on_node && !finished && grace > 0 && current_grace.is_none_or(|g| grace < g) {
                let mut marked = old.clone();
                marked["metadata"]["deletionTimestamp"] = json!(rfc3339_in(grace));
                marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                return self.write_marked(r, &key, marked, rev, opts).await.map(Deleted::Pending);
            }
            if on_node && !finished && grace > 0 {
                return Ok(Deleted::Pending(old));
            }
        }
        if opts.dry_run {
            return Ok(Deleted::Gone(old));
        }
        let kv = self.backend.delete(&key, Some(rev)).await.map_err(|e| store_error(r, name, e))?;
        let mut out = old;
        out["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        Ok(Deleted::Gone(out))
    }

    async fn write_marked(
        &self,
        r: &ResourceInfo,
        key: &str,
        marked: Value,
        rev: Revision,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let marked = convert::to_storage(r, marked);
        if opts.dry_run {
            return Ok(convert::to_served(r, marked));
        }
        let name = name_of(&marked).to_string();
        let kv = self.backend.update(key, self.encode(r, &marked), rev).await.map_err(|e| store_error(r, &name, e))?;
        let mut out = convert::to_served(r, marked);
        out["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        Ok(out)
    }

    /// Namespace deletion: mark it Terminating (new content is refused from then on), delete
    /// everything in it, then remove the `kubernetes` finalizer and the namespace itself. Contents
    /// that are themselves terminating (finalizers, graceful pods) keep the namespace Terminating.
    async fn delete_namespace(
        &self,
        r: &ResourceInfo,
        name: &str,
        old: Value,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        if opts.dry_run {
            return Ok(Deleted::Pending(old));
        }
        let key = r.key(None, name);
        let mut current = old.clone();
        if current["metadata"].get("deletionTimestamp").is_none_or(Value::is_null) {
            current["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            current["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            current["status"]["phase"] = json!("Terminating");
            let rev = rev_of(&old);
            current = self.write_marked(r, &key, current, rev, opts).await?;
        }
        match self.finalize_namespace(name).await {
            Ok(Some(gone)) => Ok(Deleted::Gone(gone)),
            Ok(None) => Ok(Deleted::Pending(self.get(r, None, name).await.unwrap_or(current))),
            // A concurrent deleter (the namespace controller, reacting to Terminating) finished first.
            Err(e) if e.code == 404 => Ok(Deleted::Gone(current)),
            Err(e) => Err(e),
        }
    }

    /// Deletes what is left in a terminating namespace; when it is empty, removes the namespace.
    /// Returns the namespace's last state when it is gone.
    pub async fn finalize_namespace(&self, name: &str) -> Result<Option<Value>, ApiError> {
        let ns_res = resources::find("", "v1", "namespaces").expect("namespaces are served");
        let mut seen = HashSet::new();
        let mut left = 0usize;
        for res in self.catalog.all().into_iter().filter(|r| r.namespaced) {
            if !seen.insert((res.storage_group, res.storage_plural)) {
                continue;
            }
            let page = self.list(res, Some(name), None, None, &|_| true).await?;
            for obj in page.items {
                let obj_name = name_of(&obj).to_string();
                let opts = DeleteOptions { grace_period_seconds: None, ..Default::default() };
                // Boxed: namespace deletion reaches this through `delete` itself. Background, as upstream's
                // namespace deleter: everything in the namespace goes anyway.
                match Box::pin(self.delete_propagating(res, Some(name), &obj_name, &opts, Some(Propagation::Background))).await {
                    Ok(Deleted::Gone(_)) => {}
                    Ok(Deleted::Pending(_)) => left += 1,
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if left > 0 {
            return Ok(None);
        }
        let ns = self.get(ns_res, None, name).await?;
        let key = ns_res.key(None, name);
        let kv = self.backend.delete(&key, Some(rev_of(&ns))).await.map_err(|e| store_error(ns_res, name, e))?;
        let mut out = ns;
        out["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        if let Some(f) = out["spec"].get_mut("finalizers") {
            *f = json!([]);
        }
        Ok(Some(out))
    }

    /// Watches objects of `r` (in `namespace`, or all) for changes after `after`.
    pub async fn watch(
        &self,
        r: &'static ResourceInfo,
        namespace: Option<&str>,
        after: Revision,
    ) -> Result<impl Stream<Item = Result<ObjectEvent, ApiError>> + Send + 'static + use<>, ApiError> {
        let prefix = Self::prefix(r, namespace);
        let stream = self.backend.watch(&prefix, after).await.map_err(|e| store_error(r, "", e))?;
        let encryptor = self.encryptor.clone();
        Ok(stream.map(move |item| {
            let ev = item.map_err(|e| store_error(r, "", e))?;
            let object = decode_value(encryptor.as_deref(), r, &ev.kv.value, ev.kv.mod_revision)?;
            let previous = match &ev.prev {
                Some(p) => Some(decode_value(encryptor.as_deref(), r, &p.value, p.mod_revision)?),
                None => None,
            };
            let kind = match ev.kind {
                EventKind::Create => EventType::Added,
                EventKind::Update => EventType::Modified,
                EventKind::Delete => EventType::Deleted,
            };
            Ok(ObjectEvent { kind, object, previous, revision: ev.revision })
        }))
    }

    /// Creates `obj` unless an object of that name exists (bootstrap of built-in objects).
    pub async fn ensure(&self, r: &ResourceInfo, namespace: Option<&str>, obj: Value) -> Result<(), ApiError> {
        let name = name_of(&obj).to_string();
        match self.get(r, namespace, &name).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 => match self.create(r, namespace, obj, WriteOptions::default()).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Assigns cluster IPs and node ports to a Service being created or updated; returns field errors
    /// for addresses that are outside the ranges or taken.
    async fn allocate_service(&self, svc: &mut Value, old: Option<&Value>) -> Result<Vec<FieldError>, ApiError> {
        let svc_res = resources::find("", "v1", "services").expect("services are served");
        let me = (svc["metadata"]["namespace"].as_str().unwrap_or("").to_string(), name_of(svc).to_string());
        let page = self.list(svc_res, None, None, None, &|_| true).await?;
        let mut used_ips = HashSet::new();
        let mut used_ports = HashSet::new();
        for s in &page.items {
            let id = (s["metadata"]["namespace"].as_str().unwrap_or("").to_string(), name_of(s).to_string());
            if id == me {
                continue;
            }
            if let Some(ip) = s["spec"]["clusterIP"].as_str().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) {
                used_ips.insert(ip);
            }
            for p in s["spec"]["ports"].as_array().into_iter().flatten() {
                if let Some(np) = p["nodePort"].as_u64() {
                    used_ports.insert(np as u16);
                }
            }
        }
        let mut errors = Vec::new();
        let cidr = self.config.service_cidr;
        let svc_type = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
        if svc_type == "ExternalName" {
            if let Some(spec) = svc["spec"].as_object_mut() {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
        } else {
            let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
            let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str()).unwrap_or("").to_string();
            let ip = if requested == "None" {
                "None".to_string()
            } else if !requested.is_empty() {
                if requested != old_ip {
                    match requested.parse::<Ipv4Addr>() {
                        Ok(ip) if !cidr.assignable(ip) => errors.push(FieldError::invalid(
                            "spec.clusterIPs",
                            &json!([requested]),
                            &format!("failed to allocate IP {requested}: provided IP is not in the valid range. The range of valid IPs is {cidr}"),
                        )),
                        Ok(ip) if used_ips.contains(&ip) => errors.push(FieldError::invalid(
                            "spec.clusterIPs",
                            &json!([requested]),
                            &format!("failed to allocate IP {requested}: provided IP is already allocated"),
                        )),
                        Ok(_) => {}
                        Err(_) => errors.push(FieldError::invalid(
                            "spec.clusterIPs[0]",
                            &json!(requested),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )),
                    }
                }
                requested
            } else if !old_ip.is_empty() {
                old_ip
            } else {
                match allocator::pick_cluster_ip(&cidr, &used_ips) {
                    Some(ip) => ip.to_string(),
                    None => {
                        return Err(ApiError::internal(format!("failed to allocate a serviceIP: range {cidr} is full")));
                    }
                }
            };
            svc["spec"]["clusterIP"] = json!(ip);
            svc["spec"]["clusterIPs"] = json!([ip]);
            if ip != "None" {
                svc["spec"]["ipFamilies"] = json!(["IPv4"]);
                if svc["spec"].get("ipFamilyPolicy").is_none() {
                    svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
                }
            }
        }
        if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer") {
            let range = self.config.node_port_range;
            let mut taken_here = HashSet::new();
            let n = svc["spec"]["ports"].as_array().map(Vec::len).unwrap_or(0);
            for i in 0..n {
                let requested = svc["spec"]["ports"][i]["nodePort"].as_u64().unwrap_or(0) as u16;
                let port = if requested != 0 {
                    let was_mine = old.is_some_and(|o| {
                        o["spec"]["ports"].as_array().into_iter().flatten().any(|p| p["nodePort"].as_u64() == Some(requested as u64))
                    });
                    if !was_mine && (requested < range.0 || requested > range.1) {
                        errors.push(FieldError::invalid(format!("spec.ports[{i}].nodePort"), &json!(requested),
                            &format!("provided port is not in the valid range. The range of valid ports is {}-{}", range.0, range.1)));
                    } else if !was_mine && used_ports.contains(&requested) {
                        errors.push(FieldError::invalid(format!("spec.ports[{i}].nodePort"), &json!(requested), "provided port is already allocated"));
                    }
                    requested
                } else {
                    let mut all = used_ports.clone();
                    all.extend(taken_here.iter().copied());
                    match allocator::pick_node_port(range, &all) {
                        Some(p) => p,
                        None => return Err(ApiError::internal("failed to allocate a nodePort: range is full")),
                    }
                };
                taken_here.insert(port);
                svc["spec"]["ports"][i]["nodePort"] = json!(port);
            }
        }
        Ok(errors)
    }
}

/// The resource as stored (autoscaling/v1 HPAs are handled as v2, events.k8s.io Events as core).
fn storage_resource(r: &ResourceInfo) -> &ResourceInfo {
    let gv = convert::storage_api_version(r);
    if r.custom {
        // Custom resources are defaulted and validated by their own version's schema (custom.rs).
        return r;
    }
    if gv.is_empty() {
        return resources::find(r.group, r.version, r.plural).expect("resource from the table");
    }
    let (g, v) = resources::split_api_version(gv);
    resources::find(g, v, r.storage_plural).expect("storage version is served")
}

/// Checks that a request object is a JSON object and gives it a `metadata` object if it has none.
fn ensure_metadata(obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    Ok(())
}

fn rev_of(obj: &Value) -> Revision {
    obj["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A stored value as plain JSON bytes: decrypted for Secrets, borrowed as it is otherwise.
fn plaintext<'a>(encryptor: Option<&Encryptor>, r: &ResourceInfo, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, ApiError> {
    match (encryptor, is_secret(r)) {
        (Some(enc), true) => enc.decrypt(bytes).map(std::borrow::Cow::Owned).map_err(|e| ApiError::internal(e.to_string())),
        _ => Ok(std::borrow::Cow::Borrowed(bytes)),
    }
}

/// Decodes a stored value into the object `r` serves, with `resourceVersion` set.
fn decode_value(encryptor: Option<&Encryptor>, r: &ResourceInfo, bytes: &[u8], revision: Revision) -> Result<Value, ApiError> {
    let bytes = plaintext(encryptor, r, bytes)?;
    let mut obj: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("stored object is not valid JSON: {e}")))?;
    obj["metadata"]["resourceVersion"] = json!(revision.to_string());
    Ok(convert::to_served(r, obj))
}

/// Continue tokens: base64 of `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key suffix>"}`, the
/// shape Kubernetes uses.
fn encode_continue(last_key: &str, prefix: &str, revision: Revision) -> String {
    use base64::Engine as _;
    let start = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(String, Revision), ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad());
    }
    let start = v["start"].as_str().ok_or_else(bad)?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    let rev = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    Ok((format!("{prefix}{start}"), rev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue("/registry/core/pods/default/web-1", "/registry/core/pods/default/", 42);
        assert_eq!(decode_continue(&t, "/registry/core/pods/default/").unwrap(), ("/registry/core/pods/default/web-1".to_string(), 42));
        assert!(decode_continue("not-base64!", "/p/").is_err());
        assert!(decode_continue(&base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE, "{}"), "/p/").is_err());
    }

    #[test]
    fn generated_suffixes_use_the_kubernetes_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
