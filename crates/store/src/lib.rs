//! A revisioned key-value store shaped like etcd v3 (and kine): the storage boundary of Skiff.
//!
//! The store keeps opaque bytes under string keys. Every write takes the next value of one global
//! revision counter; a key's `mod_revision` is the revision of its last write, exactly as in etcd, and is
//! what the API layer exposes as `metadata.resourceVersion`. A watch resumes from any revision that is
//! still in the history and fails with [`StoreError::Compacted`] once that revision has been compacted.
//!
//! Backends: [`memory`] (tests), [`embedded`] (redb, the default, with group commit) and [`etcd`]
//! (etcd v3 through `etcd-client`). One conformance suite (`tests/conformance.rs`) runs against all three.

pub mod embedded;
pub mod etcd;
pub mod memory;
mod watch;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

/// A store revision. Revisions start at 1 and only grow; 0 means "no revision" / "latest".
pub type Revision = i64;

/// The revision of an empty store. As in etcd, the first write gets the next one, so a watch after this
/// revision (a new store's [`Backend::compacted_revision`]) replays the whole history.
pub const EMPTY_STORE_REVISION: Revision = 1;

/// One stored key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (in its current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What a list asks for.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Keys that start with this prefix are listed, in byte order.
    pub prefix: String,
    /// Only keys strictly greater than this one are listed (pagination: the last key of the previous page).
    pub start_after: Option<String>,
    /// At most this many items; `None` or 0 lists all.
    pub limit: Option<usize>,
}

/// A page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store's revision at which the list was read.
    pub revision: Revision,
    /// Whether more keys match after the last item returned.
    pub more: bool,
}

/// The kind of change a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created (its create revision equals this event's revision).
    Create,
    /// An existing key was updated.
    Update,
    /// The key was deleted.
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// The revision of this change.
    pub revision: Revision,
    /// For create and update: the new key-value. For delete: the last value the key had, with
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The previous value for updates and deletes, when the backend has it.
    pub prev: Option<KeyValue>,
}

/// A stream of watch events in revision order. It ends when the store shuts down; an `Err` item
/// (for example [`StoreError::Compacted`] when a slow watcher fell behind) ends it too.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// Errors the store reports. The API layer maps them to Kubernetes `Status` codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// A compare-and-swap failed: the key's mod revision was not the expected one.
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// The requested revision is older than the oldest one kept in history.
    #[error("revision {requested} has been compacted (oldest kept: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current: {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("the store is shutting down")]
    Closed,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A revisioned key-value backend. All methods are linearizable; an `Ok` from a write means the write is
/// durable (for durable backends) and visible to every later read and watch.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Reads one key at the latest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Lists keys under a prefix at the latest revision.
    async fn list(&self, options: &ListOptions) -> Result<ListResult>;

    /// Counts keys under a prefix.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// Creates a key that must not exist; [`StoreError::AlreadyExists`] otherwise.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces the value of an existing key if its mod revision is `expected`
    /// ([`StoreError::Conflict`] otherwise, [`StoreError::NotFound`] if it does not exist).
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Deletes a key, if `expected` is given only when its mod revision matches. Returns the deleted
    /// key-value with `mod_revision` set to the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Watches keys under `prefix` for changes with a revision strictly greater than `after`.
    /// `after = 0` means "from now". Fails with [`StoreError::Compacted`] if `after` is older than the
    /// history kept, and with [`StoreError::FutureRevision`] if it is newer than the current revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Forgets history up to and including `revision`: watches from older revisions then fail.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The oldest revision a watch can still start after.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// The store's current revision (the revision of the last write, or of the empty store).
    async fn current_revision(&self) -> Result<Revision>;
}
