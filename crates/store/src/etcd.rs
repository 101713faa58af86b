//! etcd v3 backend through `etcd-client`: the store for several API servers sharing one etcd cluster.
//!
//! Revisions are etcd's own. Writes are transactions that compare the key's `create_revision` /
//! `mod_revision`, so conflicts are decided by etcd. Notes:
//!
//! - [`Backend::compacted_revision`] is best effort: etcd 3.4 has no call that returns the compacted
//!   revision, so this backend reports the highest of the compactions it did itself and the compact
//!   revisions etcd reported in errors ([`crate::EMPTY_STORE_REVISION`] until it has seen one).
//!   Compactions by other clients are only seen once a watch runs into them.
//! - A watch is one gRPC watch stream; dropping the [`WatchStream`] closes it, which cancels the watch on
//!   the server. If etcd closes the stream, the watch ends with an error.
//! - A delete event whose previous value was already compacted has an empty value and create revision 0.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, PutOptions, ResponseHeader, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
};

use crate::{
    Backend, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, StoreError,
    WatchEvent, WatchStream,
};

/// How long to look for the compact revision etcd reports, when a watch starts before it.
const COMPACT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A [`Backend`] on an etcd v3 cluster.
pub struct EtcdBackend {
    client: Client,
    /// Best-effort compacted revision (see the module documentation).
    compacted: Arc<AtomicI64>,
}

fn backend_error(doing: &str, err: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("{doing}: {err}"))
}

fn status_says(err: &etcd_client::Error, what: &str) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(status) if status.message().contains(what))
}

fn is_compacted(err: &etcd_client::Error) -> bool {
    status_says(err, "required revision has been compacted")
}

fn is_future(err: &etcd_client::Error) -> bool {
    status_says(err, "required revision is a future revision")
}

fn header_revision(header: Option<&ResponseHeader>) -> Result<Revision> {
    header
        .map(|header| header.revision())
        .ok_or_else(|| StoreError::Backend("reading an etcd response: it has no header".into()))
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv
        .key_str()
        .map_err(|_| StoreError::Backend("reading a key from etcd: the key is not UTF-8".into()))?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

/// The etcd key range of a prefix: `[key, end)`; the empty prefix is every key.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (vec![0], vec![0]);
    }
    let key = prefix.as_bytes().to_vec();
    let mut end = key.clone();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (key, end);
        }
    }
    // A prefix of only 0xff bytes: every key from it on.
    (key, vec![0])
}

fn convert_event(event: &etcd_client::Event) -> Result<WatchEvent> {
    let kv = event.kv().ok_or_else(|| {
        StoreError::Backend("reading an etcd watch event: it has no key-value".into())
    })?;
    let prev = event.prev_kv().map(convert).transpose()?;
    let revision = kv.mod_revision();
    Ok(match event.event_type() {
        EventType::Put => {
            let kind = if kv.create_revision() == kv.mod_revision() {
                EventKind::Create
            } else {
                EventKind::Update
            };
            WatchEvent {
                kind,
                revision,
                kv: convert(kv)?,
                prev,
            }
        }
        EventType::Delete => {
            let (value, create_revision) = prev
                .as_ref()
                .map(|prev| (prev.value.clone(), prev.create_revision))
                .unwrap_or_default();
            let key = convert(kv)?.key;
            WatchEvent {
                kind: EventKind::Delete,
                revision,
                kv: KeyValue {
                    key,
                    value,
                    create_revision,
                    mod_revision: revision,
                },
                prev,
            }
        }
    })
}

impl EtcdBackend {
    /// Connects to etcd at `endpoints` (URLs like `http://127.0.0.1:2379`) and checks that it answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|err| {
                StoreError::Backend(format!(
                    "connecting to etcd at {}: {err}",
                    endpoints.join(",")
                ))
            })?;
        let backend = EtcdBackend {
            client,
            compacted: Arc::new(AtomicI64::new(crate::EMPTY_STORE_REVISION)),
        };
        backend.current_revision().await.map_err(|err| {
            StoreError::Backend(format!(
                "checking that etcd at {} answers: {err}",
                endpoints.join(",")
            ))
        })?;
        Ok(backend)
    }

    /// Asks etcd at which revision it compacted, by starting a watch at `after + 1` (which etcd cancels
    /// with the compact revision), and builds the error for a watch that starts there.
    async fn compacted_error(&self, key: Vec<u8>, end: Vec<u8>, after: Revision) -> StoreError {
        let mut watch_client = self.client.watch_client();
        let probe = async move {
            let options = WatchOptions::new()
                .with_range(end)
                .with_start_revision(after + 1);
            let mut stream = watch_client.watch(key, Some(options)).await.ok()?;
            loop {
                let response = stream.message().await.ok()??;
                if response.compact_revision() > 0 {
                    return Some(response.compact_revision());
                }
                if response.canceled() {
                    return None;
                }
            }
        };
        let reported = tokio::time::timeout(COMPACT_PROBE_TIMEOUT, probe)
            .await
            .ok()
            .flatten();
        if let Some(revision) = reported {
            self.compacted.fetch_max(revision, Ordering::SeqCst);
        }
        let compacted = reported.unwrap_or_else(|| self.compacted.load(Ordering::SeqCst));
        StoreError::Compacted {
            requested: after,
            compacted,
        }
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(|err| backend_error("reading a key from etcd", err))?;
        response.kvs().first().map(convert).transpose()
    }

    async fn list(&self, options: &ListOptions) -> Result<ListResult> {
        // Read in chunks, all at the revision of the first one: one range response must stay under
        // the gRPC message limit (4 MiB by default), which a large prefix easily exceeds.
        const CHUNK: usize = 500;
        let (prefix_key, end) = prefix_range(&options.prefix);
        let mut start = match &options.start_after {
            Some(after) if after.as_str() >= options.prefix.as_str() => {
                let mut start = after.as_bytes().to_vec();
                start.push(0);
                start
            }
            _ => prefix_key,
        };
        let wanted = options.limit.filter(|&limit| limit > 0);
        let mut items = Vec::new();
        let mut revision = 0;
        loop {
            let chunk = wanted.map_or(CHUNK, |w| (w - items.len()).min(CHUNK));
            let mut get = GetOptions::new().with_range(end.clone()).with_limit(chunk as i64);
            if revision > 0 {
                get = get.with_revision(revision);
            }
            let response = self
                .client
                .kv_client()
                .get(start.clone(), Some(get))
                .await
                .map_err(|err| backend_error("listing keys in etcd", err))?;
            if revision == 0 {
                revision = header_revision(response.header())?;
            }
            for kv in response.kvs() {
                items.push(convert(kv)?);
            }
            let more = response.more();
            let full = wanted.is_some_and(|w| items.len() >= w);
            match response.kvs().last() {
                Some(last) if more && !full => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(ListResult { items, revision, more }),
            }
        }
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let (key, end) = prefix_range(prefix);
        let options = GetOptions::new().with_range(end).with_count_only();
        let response = self
            .client
            .kv_client()
            .get(key, Some(options))
            .await
            .map_err(|err| backend_error("counting keys in etcd", err))?;
        Ok(u64::try_from(response.count()).unwrap_or(0))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|err| backend_error("creating a key in etcd", err))?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        let revision = header_revision(response.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([
                Compare::create_revision(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|err| backend_error("updating a key in etcd", err))?;
        let revision = header_revision(response.header())?;
        let answers = response.op_responses();
        if !response.succeeded() {
            return Err(refusal(key, expected, answers.first()));
        }
        let create_revision = match answers.first() {
            Some(TxnOpResponse::Put(put)) => put.prev_key().map(|prev| prev.create_revision()),
            _ => None,
        };
        let create_revision = create_revision.ok_or_else(|| {
            StoreError::Backend("updating a key in etcd: the answer has no previous value".into())
        })?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|err| backend_error("deleting a key in etcd", err))?;
        let revision = header_revision(response.header())?;
        let answers = response.op_responses();
        if !response.succeeded() {
            return Err(refusal(key, expected.unwrap_or(0), answers.first()));
        }
        let prev = match answers.first() {
            Some(TxnOpResponse::Delete(delete)) => {
                delete.prev_kvs().first().map(convert).transpose()?
            }
            _ => None,
        };
        let prev = prev.ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
        Ok(KeyValue {
            mod_revision: revision,
            ..prev
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (key, end) = prefix_range(prefix);
        // A count-only read of one key at revision `after` fails exactly when a watch from `after + 1`
        // would: the revision is compacted or in the future. Its header gives the current revision.
        let mut probe = GetOptions::new().with_count_only();
        if after > 0 {
            probe = probe.with_revision(after);
        }
        let current = match self.client.kv_client().get(key.clone(), Some(probe)).await {
            Ok(response) => header_revision(response.header())?,
            Err(err) if is_compacted(&err) => {
                return Err(self.compacted_error(key, end, after).await);
            }
            Err(err) if is_future(&err) => {
                return Err(StoreError::FutureRevision {
                    requested: after,
                    current: self.current_revision().await?,
                });
            }
            Err(err) => {
                return Err(backend_error(
                    "checking the start revision of a watch in etcd",
                    err,
                ));
            }
        };
        let start = if after == 0 { current } else { after };
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(start + 1)
            .with_prev_key();
        let stream = self
            .client
            .watch_client()
            .watch(key, Some(options))
            .await
            .map_err(|err| backend_error("starting a watch in etcd", err))?;
        let mut watch = EtcdWatch {
            stream,
            pending: VecDeque::new(),
            last: start,
            compacted: self.compacted.clone(),
            done: false,
        };
        // Wait for etcd to confirm the watch, so that it is in place when this returns.
        match watch.stream.message().await {
            Ok(Some(response)) => watch.absorb(response)?,
            Ok(None) => {
                return Err(StoreError::Backend(
                    "starting a watch in etcd: the stream closed".into(),
                ));
            }
            Err(err) => return Err(backend_error("starting a watch in etcd", err)),
        }
        Ok(Box::pin(futures::stream::unfold(
            watch,
            |mut watch| async move {
                let item = watch.next().await?;
                Some((item, watch))
            },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let options = CompactionOptions::new().with_physical();
        match self
            .client
            .kv_client()
            .compact(revision, Some(options))
            .await
        {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::SeqCst);
                Ok(())
            }
            // Already compacted at or past `revision`.
            Err(err) if is_compacted(&err) => Ok(()),
            Err(err) if is_future(&err) => Err(StoreError::FutureRevision {
                requested: revision,
                current: self.current_revision().await?,
            }),
            Err(err) => Err(backend_error("compacting etcd", err)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.compacted.load(Ordering::SeqCst))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let options = GetOptions::new().with_count_only();
        let response = self
            .client
            .kv_client()
            .get(vec![0], Some(options))
            .await
            .map_err(|err| backend_error("reading the current revision of etcd", err))?;
        header_revision(response.header())
    }
}

/// Why a conditional write was refused, from the `get` of its else branch.
fn refusal(key: &str, expected: Revision, answer: Option<&TxnOpResponse>) -> StoreError {
    let current = match answer {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.mod_revision()),
        _ => None,
    };
    match current {
        Some(actual) => StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual,
        },
        None => StoreError::NotFound(key.to_owned()),
    }
}

struct EtcdWatch {
    stream: etcd_client::WatchStream,
    pending: VecDeque<WatchEvent>,
    /// The revision of the last event received (or the revision the watch started after).
    last: Revision,
    compacted: Arc<AtomicI64>,
    done: bool,
}

impl EtcdWatch {
    fn absorb(&mut self, response: WatchResponse) -> Result<()> {
        if response.compact_revision() > 0 {
            let compacted = response.compact_revision();
            self.compacted.fetch_max(compacted, Ordering::SeqCst);
            return Err(StoreError::Compacted {
                requested: self.last,
                compacted,
            });
        }
        if response.canceled() {
            return Err(StoreError::Backend(format!(
                "etcd canceled a watch: {}",
                response.cancel_reason()
            )));
        }
        for event in response.events() {
            let event = convert_event(event)?;
            self.last = event.revision;
            self.pending.push_back(event);
        }
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let failure = match self.stream.message().await {
                Ok(Some(response)) => self.absorb(response).err(),
                Ok(None) => Some(StoreError::Backend(
                    "watching etcd: etcd closed the watch stream".into(),
                )),
                Err(err) => Some(backend_error("watching etcd", err)),
            };
            if let Some(err) = failure {
                self.done = true;
                return Some(Err(err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_range;

    #[test]
    fn prefix_ranges_end_after_the_prefix() {
        assert_eq!(prefix_range("/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
        assert_eq!(
            prefix_range("a\u{7f}"),
            (b"a\x7f".to_vec(), b"a\x80".to_vec())
        );
    }
}
