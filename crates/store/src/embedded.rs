//! Embedded backend: redb in one file, with group commit through a single writer thread.
//!
//! Tables:
//! - `kv`: key → `create_revision (i64 LE) ++ mod_revision (i64 LE) ++ value`;
//! - `log`: revision → the event of that revision (kind, key, create revision, value, previous key-value);
//! - `meta`: `"revision"` (current revision) and `"compacted"` (revision history is compacted up to).
//!
//! Writers send their operation to one writer thread, which takes every queued operation (up to
//! [`MAX_BATCH`]), applies them in order in one write transaction (each write takes the next revision;
//! compare-and-swap checks see the earlier writes of the same batch), commits once with
//! [`Durability::Immediate`] (one fsync for the whole batch) and only then answers the writers and
//! broadcasts the batch's events to watchers. So an acknowledged write survives `kill -9` and power loss,
//! and one fsync serves many concurrent writers. A batch whose operations all failed their checks is
//! aborted without touching the disk.
//!
//! Reads run in read transactions on the blocking pool and see one consistent snapshot each. Watches
//! replay the `log` table, then follow the broadcast (see `watch.rs`). The history grows until the caller
//! calls [`Backend::compact`]; nothing runs in the background.

use std::fmt::Display;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
};
use tokio::sync::{broadcast, oneshot};

use crate::watch::{self, EventBatch, History};
use crate::{
    Backend, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, StoreError,
    WatchEvent, WatchStream,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// The most operations the writer applies in one transaction.
pub const MAX_BATCH: usize = 1024;

/// A [`Backend`] stored in one redb file. Dropping it stops the writer thread and closes the file.
pub struct EmbeddedBackend {
    db: Arc<Database>,
    shared: Arc<Shared>,
    ops: Option<mpsc::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
}

/// State shared by the backend handle and its writer thread.
struct Shared {
    /// The revision of the last committed write (a copy of `meta["revision"]`).
    current: AtomicI64,
    /// The revision the history is compacted up to (a copy of `meta["compacted"]`).
    compacted: AtomicI64,
    events: broadcast::Sender<EventBatch>,
}

enum Request {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

/// What one operation answers: the written key-value (none for compaction), or why it was refused.
type Outcome = Result<Option<KeyValue>>;

struct Op {
    request: Request,
    reply: oneshot::Sender<Outcome>,
}

fn backend_error<E: Display>(doing: &'static str) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::Backend(format!("{doing}: {err}"))
}

impl EmbeddedBackend {
    /// Opens the store in the redb file at `path`, creating it if needed. Revisions continue from
    /// where the file left them.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(|err| {
            StoreError::Backend(format!(
                "opening the store database {}: {err}",
                path.display()
            ))
        })?;
        let (current, compacted) = init_tables(&db)?;
        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            events: broadcast::channel(watch::BROADCAST_CAPACITY).0,
        });
        let (ops, queue) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let db = db.clone();
                let shared = shared.clone();
                move || run_writer(&db, &shared, &queue)
            })
            .map_err(backend_error("starting the store writer thread"))?;
        Ok(EmbeddedBackend {
            db,
            shared,
            ops: Some(ops),
            writer: Some(writer),
        })
    }

    async fn submit(&self, request: Request) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let ops = self.ops.as_ref().ok_or(StoreError::Closed)?;
        ops.send(Op { request, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        read(self.db.clone(), doing, f).await
    }
}

impl Drop for EmbeddedBackend {
    fn drop(&mut self) {
        // Closing the queue stops the writer after the batch it is committing; joining it makes sure the
        // file is closed when the backend is gone, so it can be reopened at once.
        self.ops.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

async fn read<T: Send + 'static>(
    db: Arc<Database>,
    doing: &'static str,
    f: impl FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || {
        let txn = db.begin_read().map_err(backend_error(doing))?;
        f(&txn)
    })
    .await
    .map_err(backend_error(doing))?
}

/// Creates the tables of a new file and reads the revisions of an existing one.
fn init_tables(db: &Database) -> Result<(Revision, Revision)> {
    let doing = "initialising the store tables";
    let txn = db.begin_write().map_err(backend_error(doing))?;
    let revisions = {
        txn.open_table(KV).map_err(backend_error(doing))?;
        txn.open_table(LOG).map_err(backend_error(doing))?;
        let mut meta = txn.open_table(META).map_err(backend_error(doing))?;
        let revisions = (
            meta_value(&meta, META_REVISION)?,
            meta_value(&meta, META_COMPACTED)?,
        );
        if revisions.0 == 0 {
            // A new file: the empty store is at the first revision, and its history starts after it.
            meta.insert(META_REVISION, crate::EMPTY_STORE_REVISION)
                .map_err(backend_error(doing))?;
            meta.insert(META_COMPACTED, crate::EMPTY_STORE_REVISION)
                .map_err(backend_error(doing))?;
            (crate::EMPTY_STORE_REVISION, crate::EMPTY_STORE_REVISION)
        } else {
            revisions
        }
    };
    txn.commit().map_err(backend_error(doing))?;
    Ok(revisions)
}

fn meta_value(meta: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<Revision> {
    Ok(meta
        .get(name)
        .map_err(backend_error("reading the store revisions"))?
        .map_or(0, |v| v.value()))
}

fn run_writer(db: &Database, shared: &Shared, queue: &mpsc::Receiver<Op>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(db, shared, batch);
    }
}

/// Applies a batch in one transaction, commits it durably, then publishes its events and answers.
fn commit_batch(db: &Database, shared: &Shared, batch: Vec<Op>) {
    let mut revision = shared.current.load(Ordering::SeqCst);
    let mut compacted = shared.compacted.load(Ordering::SeqCst);
    let mut events = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    let committed = (|| -> Result<()> {
        let doing = "committing a batch of writes";
        let mut txn = db.begin_write().map_err(backend_error(doing))?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend_error(doing))?;
        let compacted_before = compacted;
        {
            let mut tables = Tables {
                kv: txn.open_table(KV).map_err(backend_error(doing))?,
                log: txn.open_table(LOG).map_err(backend_error(doing))?,
            };
            for op in &batch {
                outcomes.push(tables.apply(
                    &op.request,
                    &mut revision,
                    &mut compacted,
                    &mut events,
                )?);
            }
            let mut meta = txn.open_table(META).map_err(backend_error(doing))?;
            meta.insert(META_REVISION, revision)
                .map_err(backend_error(doing))?;
            meta.insert(META_COMPACTED, compacted)
                .map_err(backend_error(doing))?;
        }
        if events.is_empty() && compacted == compacted_before {
            // Every operation was refused: nothing to make durable.
            txn.abort().map_err(backend_error(doing))?;
        } else {
            txn.commit().map_err(backend_error(doing))?;
        }
        Ok(())
    })();
    match committed {
        Ok(()) => {
            shared.current.store(revision, Ordering::SeqCst);
            shared.compacted.store(compacted, Ordering::SeqCst);
            if !events.is_empty() {
                // No receivers is fine: nobody is watching.
                let _ = shared.events.send(Arc::from(events));
            }
            for (op, outcome) in batch.into_iter().zip(outcomes) {
                // A writer that went away does not need its answer.
                let _ = op.reply.send(outcome);
            }
        }
        Err(err) => {
            tracing::error!("store write failed: {err}");
            let message = err.to_string();
            for op in batch {
                let _ = op.reply.send(Err(StoreError::Backend(message.clone())));
            }
        }
    }
}

struct Tables<'txn> {
    kv: Table<'txn, &'static str, &'static [u8]>,
    log: Table<'txn, i64, &'static [u8]>,
}

impl Tables<'_> {
    /// Applies one operation. The outer error is a storage failure that fails the whole batch; the
    /// inner one is this operation's answer.
    fn apply(
        &mut self,
        request: &Request,
        revision: &mut Revision,
        compacted: &mut Revision,
        events: &mut Vec<WatchEvent>,
    ) -> Result<Outcome> {
        match request {
            Request::Create { key, value } => {
                if self.get(key)?.is_some() {
                    return Ok(Err(StoreError::AlreadyExists(key.clone())));
                }
                *revision += 1;
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: *revision,
                    mod_revision: *revision,
                };
                self.put(&kv)?;
                self.record(
                    WatchEvent {
                        kind: EventKind::Create,
                        revision: *revision,
                        kv: kv.clone(),
                        prev: None,
                    },
                    events,
                )?;
                Ok(Ok(Some(kv)))
            }
            Request::Update {
                key,
                value,
                expected,
            } => {
                let Some(prev) = self.get(key)? else {
                    return Ok(Err(StoreError::NotFound(key.clone())));
                };
                if prev.mod_revision != *expected {
                    return Ok(Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        actual: prev.mod_revision,
                    }));
                }
                *revision += 1;
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.create_revision,
                    mod_revision: *revision,
                };
                self.put(&kv)?;
                let event = WatchEvent {
                    kind: EventKind::Update,
                    revision: *revision,
                    kv: kv.clone(),
                    prev: Some(prev),
                };
                self.record(event, events)?;
                Ok(Ok(Some(kv)))
            }
            Request::Delete { key, expected } => {
                let Some(prev) = self.get(key)? else {
                    return Ok(Err(StoreError::NotFound(key.clone())));
                };
                if let Some(expected) = *expected
                    && prev.mod_revision != expected
                {
                    return Ok(Err(StoreError::Conflict {
                        key: key.clone(),
                        expected,
                        actual: prev.mod_revision,
                    }));
                }
                *revision += 1;
                self.kv
                    .remove(key.as_str())
                    .map_err(backend_error("deleting a key"))?;
                let kv = KeyValue {
                    mod_revision: *revision,
                    ..prev.clone()
                };
                let event = WatchEvent {
                    kind: EventKind::Delete,
                    revision: *revision,
                    kv: kv.clone(),
                    prev: Some(prev),
                };
                self.record(event, events)?;
                Ok(Ok(Some(kv)))
            }
            Request::Compact { revision: target } => {
                if *target > *revision {
                    return Ok(Err(StoreError::FutureRevision {
                        requested: *target,
                        current: *revision,
                    }));
                }
                if *target > *compacted {
                    self.log
                        .retain_in(..=*target, |_, _| false)
                        .map_err(backend_error("compacting the history"))?;
                    *compacted = *target;
                }
                Ok(Ok(None))
            }
        }
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let found = self.kv.get(key).map_err(backend_error("reading a key"))?;
        found.map(|value| decode_kv(key, value.value())).transpose()
    }

    fn put(&mut self, kv: &KeyValue) -> Result<()> {
        let encoded = encode_kv(kv);
        self.kv
            .insert(kv.key.as_str(), encoded.as_slice())
            .map_err(backend_error("writing a key"))?;
        Ok(())
    }

    fn record(&mut self, event: WatchEvent, events: &mut Vec<WatchEvent>) -> Result<()> {
        let encoded = encode_event(&event);
        self.log
            .insert(event.revision, encoded.as_slice())
            .map_err(backend_error("appending to the history"))?;
        events.push(event);
        Ok(())
    }
}

/// Reads the history for watchers without keeping the database open.
struct EmbeddedHistory(Weak<Database>);

#[async_trait]
impl History for EmbeddedHistory {
    async fn read_after(&self, after: Revision, limit: usize) -> Result<Option<Vec<WatchEvent>>> {
        let Some(db) = self.0.upgrade() else {
            return Ok(None);
        };
        let events = read(db, "reading the history", move |txn| {
            let meta = txn
                .open_table(META)
                .map_err(backend_error("opening the meta table"))?;
            let compacted = meta_value(&meta, META_COMPACTED)?;
            if after < compacted {
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted,
                });
            }
            let log = txn
                .open_table(LOG)
                .map_err(backend_error("opening the history table"))?;
            let entries = log
                .range(after + 1..)
                .map_err(backend_error("reading the history"))?;
            entries
                .take(limit)
                .map(|entry| {
                    let (revision, event) = entry.map_err(backend_error("reading the history"))?;
                    decode_event(revision.value(), event.value())
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        Ok(Some(events))
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read("reading a key", move |txn| {
            let kv = txn
                .open_table(KV)
                .map_err(backend_error("opening the kv table"))?;
            let found = kv
                .get(key.as_str())
                .map_err(backend_error("reading a key"))?;
            found
                .map(|value| decode_kv(&key, value.value()))
                .transpose()
        })
        .await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListResult> {
        let options = options.clone();
        self.read("listing keys", move |txn| {
            let meta = txn
                .open_table(META)
                .map_err(backend_error("opening the meta table"))?;
            let revision = meta_value(&meta, META_REVISION)?;
            let kv = txn
                .open_table(KV)
                .map_err(backend_error("opening the kv table"))?;
            let start = watch::list_start(&options.prefix, options.start_after.as_deref());
            let range = kv
                .range::<&str>((start, Bound::Unbounded))
                .map_err(backend_error("listing keys"))?;
            let mut failure = None;
            let matching = range
                .map_while(|entry| match entry {
                    Ok((key, value)) => {
                        let key = key.value();
                        key.starts_with(&options.prefix)
                            .then(|| decode_kv(key, value.value()))
                    }
                    Err(err) => Some(Err(StoreError::Backend(format!("listing keys: {err}")))),
                })
                .map_while(|item| item.map_err(|err| failure = Some(err)).ok());
            let (items, more) = watch::page(matching, options.limit);
            match failure {
                Some(err) => Err(err),
                None => Ok(ListResult {
                    items,
                    revision,
                    more,
                }),
            }
        })
        .await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_owned();
        self.read("counting keys", move |txn| {
            let kv = txn
                .open_table(KV)
                .map_err(backend_error("opening the kv table"))?;
            let range = kv
                .range::<&str>(prefix.as_str()..)
                .map_err(backend_error("counting keys"))?;
            let mut count = 0;
            for entry in range {
                let (key, _) = entry.map_err(backend_error("counting keys"))?;
                if !key.value().starts_with(&prefix) {
                    break;
                }
                count += 1;
            }
            Ok(count)
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let written = self
            .submit(Request::Create {
                key: key.to_owned(),
                value,
            })
            .await?;
        written.ok_or_else(|| {
            StoreError::Backend("creating a key: the writer returned no key-value".into())
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let written = self
            .submit(Request::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?;
        written.ok_or_else(|| {
            StoreError::Backend("updating a key: the writer returned no key-value".into())
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let written = self
            .submit(Request::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?;
        written.ok_or_else(|| {
            StoreError::Backend("deleting a key: the writer returned no key-value".into())
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before reading the revisions: whatever commits later is in the broadcast.
        let events = self.shared.events.subscribe();
        let current = self.shared.current.load(Ordering::SeqCst);
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        let start = watch::check_start(after, current, compacted)?;
        let history = EmbeddedHistory(Arc::downgrade(&self.db));
        Ok(watch::watch_stream(
            history,
            events,
            prefix.to_owned(),
            start,
            current,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.submit(Request::Compact { revision }).await.map(|_| ())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.current.load(Ordering::SeqCst))
    }
}

// ---- encoding ----

fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    let mut reader = Reader {
        bytes,
        what: "a stored key",
    };
    Ok(KeyValue {
        key: key.to_owned(),
        create_revision: reader.i64()?,
        mod_revision: reader.i64()?,
        value: reader.rest().to_vec(),
    })
}

const KIND_CREATE: u8 = 0;
const KIND_UPDATE: u8 = 1;
const KIND_DELETE: u8 = 2;

/// `kind u8, key (u32 length + bytes), create_revision i64, value (u32 length + bytes; empty for a
/// delete, whose value is the previous one), has_prev u8, [prev create i64, prev mod i64, prev value]`.
fn encode_event(event: &WatchEvent) -> Vec<u8> {
    let prev_len = event.prev.as_ref().map_or(0, |prev| prev.value.len() + 20);
    let mut out = Vec::with_capacity(30 + event.kv.key.len() + event.kv.value.len() + prev_len);
    let (kind, value): (u8, &[u8]) = match event.kind {
        EventKind::Create => (KIND_CREATE, &event.kv.value),
        EventKind::Update => (KIND_UPDATE, &event.kv.value),
        EventKind::Delete => (KIND_DELETE, &[]),
    };
    out.push(kind);
    put_bytes(&mut out, event.kv.key.as_bytes());
    out.extend_from_slice(&event.kv.create_revision.to_le_bytes());
    put_bytes(&mut out, value);
    match &event.prev {
        Some(prev) => {
            out.push(1);
            out.extend_from_slice(&prev.create_revision.to_le_bytes());
            out.extend_from_slice(&prev.mod_revision.to_le_bytes());
            put_bytes(&mut out, &prev.value);
        }
        None => out.push(0),
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB (redb itself limits values to 3 GiB).
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn decode_event(revision: Revision, bytes: &[u8]) -> Result<WatchEvent> {
    let mut reader = Reader {
        bytes,
        what: "a history entry",
    };
    let kind = match reader.u8()? {
        KIND_CREATE => EventKind::Create,
        KIND_UPDATE => EventKind::Update,
        KIND_DELETE => EventKind::Delete,
        other => {
            return Err(StoreError::Backend(format!(
                "decoding history entry {revision}: unknown kind {other}"
            )));
        }
    };
    let key = String::from_utf8(reader.bytes()?.to_vec()).map_err(|_| {
        StoreError::Backend(format!(
            "decoding history entry {revision}: key is not UTF-8"
        ))
    })?;
    let create_revision = reader.i64()?;
    let value = reader.bytes()?.to_vec();
    let prev = match reader.u8()? {
        0 => None,
        _ => Some(KeyValue {
            key: key.clone(),
            create_revision: reader.i64()?,
            mod_revision: reader.i64()?,
            value: reader.bytes()?.to_vec(),
        }),
    };
    let value = match (kind, &prev) {
        (EventKind::Delete, Some(prev)) => prev.value.clone(),
        _ => value,
    };
    Ok(WatchEvent {
        kind,
        revision,
        kv: KeyValue {
            key,
            value,
            create_revision,
            mod_revision: revision,
        },
        prev,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(StoreError::Backend(format!(
                "decoding {}: truncated data",
                self.what
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64> {
        let bytes = self.take(8)?;
        Ok(i64::from_le_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("took 4 bytes"));
        self.take(len as usize)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_log_encoding() {
        let v1 = KeyValue {
            key: "/k".into(),
            value: b"one".to_vec(),
            create_revision: 3,
            mod_revision: 3,
        };
        let v2 = KeyValue {
            value: b"two".to_vec(),
            mod_revision: 5,
            ..v1.clone()
        };
        let events = [
            WatchEvent {
                kind: EventKind::Create,
                revision: 3,
                kv: v1.clone(),
                prev: None,
            },
            WatchEvent {
                kind: EventKind::Update,
                revision: 5,
                kv: v2.clone(),
                prev: Some(v1),
            },
            WatchEvent {
                kind: EventKind::Delete,
                revision: 9,
                kv: KeyValue {
                    mod_revision: 9,
                    ..v2.clone()
                },
                prev: Some(v2),
            },
        ];
        for event in events {
            assert_eq!(
                decode_event(event.revision, &encode_event(&event)).unwrap(),
                event
            );
        }
    }

    #[test]
    fn truncated_entries_are_errors_not_panics() {
        let kv = KeyValue {
            key: "/k".into(),
            value: b"v".to_vec(),
            create_revision: 1,
            mod_revision: 1,
        };
        let encoded = encode_event(&WatchEvent {
            kind: EventKind::Create,
            revision: 1,
            kv,
            prev: None,
        });
        for len in 0..encoded.len() {
            assert!(decode_event(1, &encoded[..len]).is_err(), "length {len}");
        }
    }
}
