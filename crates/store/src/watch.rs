//! Watch machinery shared by the memory and embedded backends: replay from the history log, then live events.
//!
//! A watcher subscribes to the backend's broadcast of committed events *before* it reads the history, so
//! every event is either in the history it reads or in the broadcast it receives afterwards; events are
//! deduplicated by revision. Revisions of these backends are dense (every write takes exactly the next
//! one), so a watcher also knows when it missed something: when its broadcast receiver lags, or an event
//! arrives that is not the next revision, it goes back to reading the history from its last revision.
//! Nothing is ever skipped; if the history it needs has been compacted meanwhile, the stream ends with
//! [`StoreError::Compacted`].

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::{Result, Revision, StoreError, WatchEvent, WatchStream};

/// What backends broadcast after each commit: the events of one committed batch, in revision order.
pub(crate) type EventBatch = Arc<[WatchEvent]>;

/// Capacity of the event broadcast, in batches. A watcher that falls further behind re-reads the history.
pub(crate) const BROADCAST_CAPACITY: usize = 256;

/// How many history entries a watcher reads at a time while catching up.
const REPLAY_CHUNK: usize = 1024;

/// Read access to a backend's history log.
#[async_trait]
pub(crate) trait History: Send + Sync + 'static {
    /// Reads at most `limit` events (of every key) with a revision greater than `after`, in revision order.
    /// Fails with [`StoreError::Compacted`] if `after` is older than the history kept, and returns
    /// `Ok(None)` when the store has shut down.
    async fn read_after(&self, after: Revision, limit: usize) -> Result<Option<Vec<WatchEvent>>>;
}

struct Watcher<H> {
    history: H,
    events: broadcast::Receiver<EventBatch>,
    prefix: String,
    /// Every event with a revision up to this one has been handled (delivered or filtered out).
    last: Revision,
    pending: VecDeque<WatchEvent>,
    catching_up: bool,
    done: bool,
}

impl<H: History> Watcher<H> {
    fn accept(&mut self, event: &WatchEvent) {
        self.last = event.revision;
        if event.kv.key.starts_with(&self.prefix) {
            self.pending.push_back(event.clone());
        }
    }

    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                match self.history.read_after(self.last, REPLAY_CHUNK).await {
                    Ok(Some(events)) => {
                        if events.len() < REPLAY_CHUNK {
                            // The rest is (or will be) in the broadcast, which was subscribed before this read.
                            self.catching_up = false;
                        }
                        for event in &events {
                            if event.revision > self.last {
                                self.accept(event);
                            }
                        }
                    }
                    Ok(None) => self.done = true,
                    Err(err) => {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
                continue;
            }
            match self.events.recv().await {
                Ok(batch) => {
                    for event in batch.iter() {
                        if event.revision <= self.last {
                            continue;
                        }
                        if event.revision != self.last + 1 {
                            // Something was missed: take it, and what follows, from the history.
                            self.catching_up = true;
                            break;
                        }
                        self.accept(event);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => self.done = true,
            }
        }
    }
}

/// Builds the stream of a watch on `prefix` for revisions after `after`. `events` must have been
/// subscribed before the caller read the current revision it derived `after` (or checked it) from.
pub(crate) fn watch_stream<H: History>(
    history: H,
    events: broadcast::Receiver<EventBatch>,
    prefix: String,
    after: Revision,
    current: Revision,
) -> WatchStream {
    let watcher = Watcher {
        history,
        events,
        prefix,
        last: after,
        pending: VecDeque::new(),
        catching_up: after < current,
        done: false,
    };
    Box::pin(futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next().await?;
        Some((item, watcher))
    }))
}

/// Checks a watch's starting revision against the kept history; returns the revision to start after
/// (`after`, or `current` when `after` is 0, meaning "from now").
pub(crate) fn check_start(
    after: Revision,
    current: Revision,
    compacted: Revision,
) -> Result<Revision> {
    if after == 0 {
        return Ok(current);
    }
    if after > current {
        return Err(StoreError::FutureRevision {
            requested: after,
            current,
        });
    }
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    Ok(after)
}

/// Splits an ordered run of candidate items into a page of at most `limit` (0 = all) and a "more" flag.
pub(crate) fn page<T>(items: impl Iterator<Item = T>, limit: Option<usize>) -> (Vec<T>, bool) {
    match limit {
        Some(limit) if limit > 0 => {
            let mut page: Vec<T> = items.take(limit + 1).collect();
            let more = page.len() > limit;
            page.truncate(limit);
            (page, more)
        }
        _ => (items.collect(), false),
    }
}

/// The first key a list should look at: just after `start_after` when that is within or past the prefix.
pub(crate) fn list_start<'a>(
    prefix: &'a str,
    start_after: Option<&'a str>,
) -> std::ops::Bound<&'a str> {
    match start_after {
        Some(after) if after >= prefix => std::ops::Bound::Excluded(after),
        _ => std::ops::Bound::Included(prefix),
    }
}
