//! In-memory backend for tests: a `BTreeMap` of keys, a history log and a broadcast of committed events.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::watch::{self, EventBatch, History};
use crate::{
    Backend, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, StoreError,
    WatchEvent, WatchStream,
};

/// A [`Backend`] that keeps everything in memory. Same semantics as the durable backends, minus durability.
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<EventBatch>,
}

struct State {
    kv: BTreeMap<String, KeyValue>,
    log: BTreeMap<Revision, WatchEvent>,
    revision: Revision,
    compacted: Revision,
}

impl MemoryBackend {
    pub fn new() -> Self {
        MemoryBackend {
            state: Arc::new(Mutex::new(State {
                kv: BTreeMap::new(),
                log: BTreeMap::new(),
                revision: crate::EMPTY_STORE_REVISION,
                compacted: crate::EMPTY_STORE_REVISION,
            })),
            events: broadcast::channel(watch::BROADCAST_CAPACITY).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Records an event under the state lock, so broadcasts go out in revision order.
    fn commit(&self, state: &mut State, event: WatchEvent) {
        state.revision = event.revision;
        state.log.insert(event.revision, event.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::from(vec![event]));
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the maps half-updated in a way later calls would
    // misread (every write inserts after all checks), so keep serving.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct MemoryHistory(Weak<Mutex<State>>);

#[async_trait]
impl History for MemoryHistory {
    async fn read_after(&self, after: Revision, limit: usize) -> Result<Option<Vec<WatchEvent>>> {
        let Some(state) = self.0.upgrade() else {
            return Ok(None);
        };
        let state = lock(&state);
        if after < state.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: state.compacted,
            });
        }
        Ok(Some(
            state
                .log
                .range(after + 1..)
                .take(limit)
                .map(|(_, event)| event.clone())
                .collect(),
        ))
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().kv.get(key).cloned())
    }

    async fn list(&self, options: &ListOptions) -> Result<ListResult> {
        let state = self.lock();
        let start = watch::list_start(&options.prefix, options.start_after.as_deref());
        let matching = state
            .kv
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&options.prefix))
            .map(|(_, kv)| kv.clone());
        let (items, more) = watch::page(matching, options.limit);
        Ok(ListResult {
            items,
            revision: state.revision,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let state = self.lock();
        let count = state
            .kv
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .count();
        Ok(count as u64)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut state = self.lock();
        if state.kv.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        let revision = state.revision + 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        };
        state.kv.insert(key.to_owned(), kv.clone());
        let event = WatchEvent {
            kind: EventKind::Create,
            revision,
            kv: kv.clone(),
            prev: None,
        };
        self.commit(&mut state, event);
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let mut state = self.lock();
        let Some(prev) = state.kv.get(key).cloned() else {
            return Err(StoreError::NotFound(key.to_owned()));
        };
        if prev.mod_revision != expected {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: prev.mod_revision,
            });
        }
        let revision = state.revision + 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
        };
        state.kv.insert(key.to_owned(), kv.clone());
        let event = WatchEvent {
            kind: EventKind::Update,
            revision,
            kv: kv.clone(),
            prev: Some(prev),
        };
        self.commit(&mut state, event);
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut state = self.lock();
        let Some(prev) = state.kv.get(key).cloned() else {
            return Err(StoreError::NotFound(key.to_owned()));
        };
        if let Some(expected) = expected
            && prev.mod_revision != expected
        {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: prev.mod_revision,
            });
        }
        let revision = state.revision + 1;
        state.kv.remove(key);
        let kv = KeyValue {
            mod_revision: revision,
            ..prev.clone()
        };
        let event = WatchEvent {
            kind: EventKind::Delete,
            revision,
            kv: kv.clone(),
            prev: Some(prev),
        };
        self.commit(&mut state, event);
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let state = self.lock();
        let events = self.events.subscribe();
        let start = watch::check_start(after, state.revision, state.compacted)?;
        let history = MemoryHistory(Arc::downgrade(&self.state));
        Ok(watch::watch_stream(
            history,
            events,
            prefix.to_owned(),
            start,
            state.revision,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut state = self.lock();
        if revision > state.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision <= state.compacted {
            return Ok(());
        }
        state.log = state.log.split_off(&(revision + 1));
        state.compacted = revision;
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }
}
