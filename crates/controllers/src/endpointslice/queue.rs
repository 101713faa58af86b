//! A de-duplicating work queue of `namespace/name` keys (client-go's `workqueue`): a key queued while it is
//! being processed is processed once more afterwards, never twice at the same time.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    /// Queued and not yet handed out (or handed out and queued again).
    dirty: HashSet<String>,
    processing: HashSet<String>,
}

impl WorkQueue {
    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: String) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if s.processing.contains(&key) {
            return;
        }
        s.queue.push_back(key);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `key` after `delay` (dropped if `shutdown` comes first).
    pub fn add_after(self: &Arc<Self>, key: String, delay: Duration, shutdown: &CancellationToken) {
        let queue = self.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => queue.add(key),
                _ = shutdown.cancelled() => {}
            }
        });
    }

    /// The next key to process; call [`WorkQueue::done`] with it afterwards.
    pub async fn get(&self) -> String {
        loop {
            if let Some(key) = self.try_get() {
                return key;
            }
            self.notify.notified().await;
        }
    }

    fn try_get(&self) -> Option<String> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = s.queue.pop_front()?;
        s.dirty.remove(&key);
        s.processing.insert(key.clone());
        if !s.queue.is_empty() {
            // Wake another worker for the rest.
            self.notify.notify_one();
        }
        Some(key)
    }

    /// `key` was processed; if it was queued meanwhile it is queued again.
    pub fn done(&self, key: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// How many keys wait (not counting the ones being processed).
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_and_requeues_keys_added_while_processing() {
        let q = WorkQueue::default();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        let a = q.get().await;
        assert_eq!(a, "a");
        // Added while processing: not handed out now, but after done.
        q.add("a".into());
        assert_eq!(q.get().await, "b");
        assert!(q.try_get().is_none());
        q.done("a");
        assert_eq!(q.get().await, "a");
        q.done("a");
        q.done("b");
        assert!(q.is_empty());
    }
}
