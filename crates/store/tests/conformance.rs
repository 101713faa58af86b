//! Behaviour tests written once and run against every backend: memory, embedded (redb) and etcd.
//!
//! Each behaviour is an async fn taking `Arc<dyn Backend>`; the `conformance!` macro makes one test per
//! behaviour and backend (`memory::…`, `embedded::…`, `etcd::…`). Every etcd test starts its own etcd
//! server (about half a second), so tests cannot disturb each other's revisions or compactions; the
//! etcd tests fail, with instructions, when the `etcd` binary is not installed.

#[path = "support/etcd_process.rs"]
mod etcd_process;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use skiff_store::embedded::EmbeddedBackend;
use skiff_store::memory::MemoryBackend;
use skiff_store::{Backend, EventKind, KeyValue, ListOptions, StoreError, WatchEvent, WatchStream};

type B = Arc<dyn Backend>;

const PODS: &str = "/registry/core/pods/";
/// A sibling of [`PODS`] that a prefix match on it must not include.
const PODS2: &str = "/registry/core/pods2/";
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn pod(name: &str) -> String {
    format!("{PODS}{name}")
}

/// A backend under test, with whatever must live as long as it (temporary directory, etcd process).
/// Fields drop in order: the backend first.
struct Harness {
    backend: B,
    _keep: Option<Box<dyn std::any::Any + Send>>,
}

impl Harness {
    fn memory() -> anyhow::Result<Harness> {
        Ok(Harness {
            backend: Arc::new(MemoryBackend::new()),
            _keep: None,
        })
    }

    fn embedded() -> anyhow::Result<Harness> {
        let dir = tempfile::tempdir().context("creating a directory for the embedded store")?;
        let backend = EmbeddedBackend::open(&dir.path().join("db"))?;
        Ok(Harness {
            backend: Arc::new(backend),
            _keep: Some(Box::new(dir)),
        })
    }

    async fn etcd() -> anyhow::Result<Harness> {
        let (process, backend) = etcd_process::EtcdProcess::start().await?;
        Ok(Harness {
            backend: Arc::new(backend),
            _keep: Some(Box::new(process)),
        })
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let harness = super::Harness::memory()?;
                    super::$name(harness.backend.clone()).await
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let harness = super::Harness::embedded()?;
                    super::$name(harness.backend.clone()).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let harness = super::Harness::etcd().await?;
                    super::$name(harness.backend.clone()).await
                }
            )*
        }
    };
}

conformance!(
    create_and_get,
    create_refuses_existing_key,
    update_compares_mod_revision,
    delete_with_and_without_expected_revision,
    list_matches_prefix_only,
    list_paginates,
    large_lists_are_complete,
    count_matches_prefix_only,
    revisions_grow_across_keys,
    watch_from_now_sees_only_new_events,
    watch_replays_history_in_order,
    watch_filters_by_prefix,
    watch_from_compacted_revision_replays_everything,
    concurrent_writers_are_acknowledged_and_watched_once,
    slow_watcher_misses_nothing,
    compaction_fails_older_watches,
    repeated_compactions_keep_values_and_previous_values,
    future_revision_is_refused,
);

// ---- helpers ----

async fn next_event(watch: &mut WatchStream) -> anyhow::Result<WatchEvent> {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
        Err(_) => bail!("timed out after {EVENT_TIMEOUT:?} waiting for a watch event"),
        Ok(None) => bail!("the watch ended while waiting for an event"),
        Ok(Some(event)) => Ok(event.context("watching")?),
    }
}

async fn next_events(watch: &mut WatchStream, count: usize) -> anyhow::Result<Vec<WatchEvent>> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let event = next_event(watch)
            .await
            .with_context(|| format!("after {} of {count} events", events.len()))?;
        events.push(event);
    }
    Ok(events)
}

/// The error of a watch that must fail: either from `watch` itself or as the stream's first item.
async fn watch_error(backend: &B, prefix: &str, after: i64) -> anyhow::Result<StoreError> {
    let mut watch = match backend.watch(prefix, after).await {
        Err(err) => return Ok(err),
        Ok(watch) => watch,
    };
    match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
        Ok(Some(Err(err))) => Ok(err),
        Ok(other) => bail!("expected the watch after {after} to fail, it gave {other:?}"),
        Err(_) => {
            bail!("expected the watch after {after} to fail, it gave nothing for {EVENT_TIMEOUT:?}")
        }
    }
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

fn summary(events: &[WatchEvent]) -> Vec<(EventKind, &str, i64)> {
    events
        .iter()
        .map(|event| (event.kind, event.kv.key.as_str(), event.revision))
        .collect()
}

// ---- behaviours ----

async fn create_and_get(b: B) -> anyhow::Result<()> {
    let created = b.create(&pod("ns/a"), b"v1".to_vec()).await?;
    assert_eq!(created.key, pod("ns/a"));
    assert_eq!(created.value, b"v1");
    assert!(created.create_revision > 0);
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(b.get(&pod("ns/a")).await?, Some(created.clone()));
    assert_eq!(b.current_revision().await?, created.mod_revision);
    assert_eq!(b.get(&pod("ns/missing")).await?, None);
    // A get is an exact match, never a prefix match.
    assert_eq!(b.get(&pod("ns/")).await?, None);
    assert_eq!(b.get(&pod("ns/a/")).await?, None);
    Ok(())
}

async fn create_refuses_existing_key(b: B) -> anyhow::Result<()> {
    let created = b.create(&pod("ns/a"), b"v1".to_vec()).await?;
    let err = b
        .create(&pod("ns/a"), b"v2".to_vec())
        .await
        .expect_err("a second create must fail");
    assert!(
        matches!(&err, StoreError::AlreadyExists(key) if *key == pod("ns/a")),
        "{err:?}"
    );
    assert_eq!(b.get(&pod("ns/a")).await?, Some(created.clone()));
    // A refused write takes no revision.
    assert_eq!(b.current_revision().await?, created.mod_revision);
    Ok(())
}

async fn update_compares_mod_revision(b: B) -> anyhow::Result<()> {
    let created = b.create(&pod("ns/a"), b"v1".to_vec()).await?;
    let updated = b
        .update(&pod("ns/a"), b"v2".to_vec(), created.mod_revision)
        .await?;
    assert_eq!(updated.value, b"v2");
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(b.get(&pod("ns/a")).await?, Some(updated.clone()));

    let err = b
        .update(&pod("ns/a"), b"v3".to_vec(), created.mod_revision)
        .await
        .expect_err("a stale update must fail");
    match err {
        StoreError::Conflict {
            key,
            expected,
            actual,
        } => {
            assert_eq!(key, pod("ns/a"));
            assert_eq!(expected, created.mod_revision);
            assert_eq!(actual, updated.mod_revision);
        }
        other => bail!("expected a conflict, got {other:?}"),
    }
    assert_eq!(b.get(&pod("ns/a")).await?, Some(updated.clone()));

    let err = b
        .update(&pod("ns/missing"), b"v".to_vec(), updated.mod_revision)
        .await
        .expect_err("must fail");
    assert!(
        matches!(&err, StoreError::NotFound(key) if *key == pod("ns/missing")),
        "{err:?}"
    );
    assert_eq!(b.current_revision().await?, updated.mod_revision);
    Ok(())
}

async fn delete_with_and_without_expected_revision(b: B) -> anyhow::Result<()> {
    let created = b.create(&pod("ns/a"), b"v1".to_vec()).await?;
    let updated = b
        .update(&pod("ns/a"), b"v2".to_vec(), created.mod_revision)
        .await?;

    let err = b
        .delete(&pod("ns/a"), Some(created.mod_revision))
        .await
        .expect_err("a stale delete must fail");
    assert!(
        matches!(err, StoreError::Conflict { expected, actual, .. } if expected == created.mod_revision && actual == updated.mod_revision),
        "{err:?}"
    );
    assert_eq!(b.get(&pod("ns/a")).await?, Some(updated.clone()));

    let deleted = b.delete(&pod("ns/a"), Some(updated.mod_revision)).await?;
    assert_eq!(deleted.key, pod("ns/a"));
    assert_eq!(deleted.value, b"v2");
    assert_eq!(deleted.create_revision, created.create_revision);
    assert!(deleted.mod_revision > updated.mod_revision);
    assert_eq!(b.current_revision().await?, deleted.mod_revision);
    assert_eq!(b.get(&pod("ns/a")).await?, None);

    let err = b
        .delete(&pod("ns/a"), None)
        .await
        .expect_err("deleting a missing key must fail");
    assert!(
        matches!(&err, StoreError::NotFound(key) if *key == pod("ns/a")),
        "{err:?}"
    );
    let err = b
        .delete(&pod("ns/a"), Some(deleted.mod_revision))
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let other = b.create(&pod("ns/b"), b"b".to_vec()).await?;
    let deleted_b = b.delete(&pod("ns/b"), None).await?;
    assert_eq!(deleted_b.value, b"b");
    assert!(deleted_b.mod_revision > other.mod_revision);

    // A key created again starts a new life.
    let again = b.create(&pod("ns/a"), b"v3".to_vec()).await?;
    assert!(again.create_revision > deleted_b.mod_revision);
    assert_eq!(again.create_revision, again.mod_revision);
    Ok(())
}

async fn list_matches_prefix_only(b: B) -> anyhow::Result<()> {
    for key in [
        pod("ns2/c"),
        pod("ns1/b"),
        pod("ns1/a"),
        format!("{PODS2}ns1/x"),
        "/registry/core/pods".to_owned(),
        "/registry/core/services/ns1/s".to_owned(),
    ] {
        b.create(&key, key.as_bytes().to_vec()).await?;
    }
    let current = b.current_revision().await?;

    let all = b
        .list(&ListOptions {
            prefix: PODS.into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(keys(&all.items), [pod("ns1/a"), pod("ns1/b"), pod("ns2/c")]);
    assert!(!all.more);
    assert_eq!(all.revision, current);
    assert_eq!(all.items[0].value, pod("ns1/a").as_bytes());

    let ns1 = b
        .list(&ListOptions {
            prefix: pod("ns1/"),
            ..Default::default()
        })
        .await?;
    assert_eq!(keys(&ns1.items), [pod("ns1/a"), pod("ns1/b")]);
    let pods2 = b
        .list(&ListOptions {
            prefix: PODS2.into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(keys(&pods2.items), [format!("{PODS2}ns1/x")]);
    let none = b
        .list(&ListOptions {
            prefix: "/registry/apps/".into(),
            ..Default::default()
        })
        .await?;
    assert!(none.items.is_empty() && !none.more);
    assert_eq!(none.revision, current);
    Ok(())
}

async fn list_paginates(b: B) -> anyhow::Result<()> {
    let expected: Vec<String> = (0..10).map(|i| pod(&format!("ns/p{i:02}"))).collect();
    for key in expected.iter().rev() {
        b.create(key, b"x".to_vec()).await?;
    }
    b.create(&format!("{PODS2}ns/p00"), b"x".to_vec()).await?;

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut start_after = None;
    loop {
        let options = ListOptions {
            prefix: PODS.into(),
            start_after: start_after.clone(),
            limit: Some(3),
        };
        let page = b.list(&options).await?;
        pages.push((page.items.len(), page.more));
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        start_after = page.items.last().map(|kv| kv.key.clone());
        ensure!(pages.len() <= 10, "pagination does not end: {pages:?}");
    }
    assert_eq!(pages, [(3, true), (3, true), (3, true), (1, false)]);
    assert_eq!(seen, expected);

    let list = |start_after: Option<&str>, limit: Option<usize>| {
        let options = ListOptions {
            prefix: PODS.into(),
            start_after: start_after.map(str::to_owned),
            limit,
        };
        let b = b.clone();
        async move { b.list(&options).await }
    };
    let whole = list(None, None).await?;
    assert_eq!(whole.items.len(), 10);
    assert!(!whole.more);
    assert_eq!(list(None, Some(0)).await?.items.len(), 10);
    let exact = list(None, Some(10)).await?;
    assert_eq!((exact.items.len(), exact.more), (10, false));
    // A start before the prefix does not widen the list; one past the last key ends it.
    assert_eq!(list(Some("/registry/core/a"), None).await?.items.len(), 10);
    let past = list(Some(&expected[9]), Some(3)).await?;
    assert!(past.items.is_empty() && !past.more);
    let middle = list(Some(&expected[4]), Some(2)).await?;
    assert_eq!(
        keys(&middle.items),
        [expected[5].as_str(), expected[6].as_str()]
    );
    assert!(middle.more);
    Ok(())
}

/// A list larger than one response of the backend (etcd's gRPC limit is 4 MiB): every key comes back,
/// with and without a limit.
async fn large_lists_are_complete(b: B) -> anyhow::Result<()> {
    let value = vec![b'v'; 8 * 1024];
    let futures: Vec<_> = (0..1200)
        .map(|i| {
            let (b, value) = (b.clone(), value.clone());
            async move { b.create(&pod(&format!("big/p{i:04}")), value).await }
        })
        .collect();
    for r in futures::future::join_all(futures).await {
        r?;
    }
    let all = b
        .list(&ListOptions {
            prefix: pod("big/"),
            start_after: None,
            limit: None,
        })
        .await?;
    anyhow::ensure!(
        all.items.len() == 1200 && !all.more,
        "listed {} (more: {})",
        all.items.len(),
        all.more
    );
    anyhow::ensure!(
        all.items.windows(2).all(|w| w[0].key < w[1].key),
        "keys in order"
    );
    let some = b
        .list(&ListOptions {
            prefix: pod("big/"),
            start_after: None,
            limit: Some(700),
        })
        .await?;
    anyhow::ensure!(
        some.items.len() == 700 && some.more,
        "listed {} (more: {})",
        some.items.len(),
        some.more
    );
    anyhow::ensure!(some.items[699].key == pod("big/p0699"));
    Ok(())
}

async fn count_matches_prefix_only(b: B) -> anyhow::Result<()> {
    for name in ["ns1/a", "ns1/b", "ns2/c"] {
        b.create(&pod(name), b"x".to_vec()).await?;
    }
    b.create(&format!("{PODS2}ns1/a"), b"x".to_vec()).await?;
    b.create("/registry/core/pods", b"x".to_vec()).await?;
    assert_eq!(b.count(PODS).await?, 3);
    assert_eq!(b.count(&pod("ns1/")).await?, 2);
    assert_eq!(b.count(PODS2).await?, 1);
    assert_eq!(b.count("/registry/apps/").await?, 0);
    b.delete(&pod("ns1/a"), None).await?;
    assert_eq!(b.count(PODS).await?, 2);
    Ok(())
}

async fn revisions_grow_across_keys(b: B) -> anyhow::Result<()> {
    let mut last = b.current_revision().await?;
    let mut check = |kv: &KeyValue| -> anyhow::Result<()> {
        ensure!(
            kv.mod_revision > last,
            "revision {} after {last}",
            kv.mod_revision
        );
        last = kv.mod_revision;
        Ok(())
    };
    let a = b.create(&pod("ns/a"), b"1".to_vec()).await?;
    check(&a)?;
    let x = b
        .create("/registry/core/services/ns/x", b"1".to_vec())
        .await?;
    check(&x)?;
    let a = b
        .update(&pod("ns/a"), b"2".to_vec(), a.mod_revision)
        .await?;
    check(&a)?;
    let c = b.create(&pod("ns/c"), b"1".to_vec()).await?;
    check(&c)?;
    let x = b
        .delete("/registry/core/services/ns/x", Some(x.mod_revision))
        .await?;
    check(&x)?;
    assert_eq!(b.current_revision().await?, x.mod_revision);
    assert_eq!(
        b.list(&ListOptions {
            prefix: PODS.into(),
            ..Default::default()
        })
        .await?
        .revision,
        x.mod_revision
    );
    Ok(())
}

async fn watch_from_now_sees_only_new_events(b: B) -> anyhow::Result<()> {
    let a = b.create(&pod("ns/a"), b"1".to_vec()).await?;
    b.update(&pod("ns/a"), b"2".to_vec(), a.mod_revision)
        .await?;
    let mut watch = b.watch(PODS, 0).await?;
    let c = b.create(&pod("ns/c"), b"1".to_vec()).await?;
    let event = next_event(&mut watch).await?;
    assert_eq!(
        event,
        WatchEvent {
            kind: EventKind::Create,
            revision: c.mod_revision,
            kv: c,
            prev: None
        }
    );
    Ok(())
}

async fn watch_replays_history_in_order(b: B) -> anyhow::Result<()> {
    let start = b.current_revision().await?;
    let a1 = b.create(&pod("ns/a"), b"v1".to_vec()).await?;
    let a2 = b
        .update(&pod("ns/a"), b"v2".to_vec(), a1.mod_revision)
        .await?;
    let b1 = b.create(&pod("ns/b"), b"b".to_vec()).await?;
    let deleted = b.delete(&pod("ns/a"), None).await?;

    let mut watch = b.watch(PODS, start).await?;
    let events = next_events(&mut watch, 4).await?;
    let expected = vec![
        WatchEvent {
            kind: EventKind::Create,
            revision: a1.mod_revision,
            kv: a1.clone(),
            prev: None,
        },
        WatchEvent {
            kind: EventKind::Update,
            revision: a2.mod_revision,
            kv: a2.clone(),
            prev: Some(a1.clone()),
        },
        WatchEvent {
            kind: EventKind::Create,
            revision: b1.mod_revision,
            kv: b1.clone(),
            prev: None,
        },
        WatchEvent {
            kind: EventKind::Delete,
            revision: deleted.mod_revision,
            kv: KeyValue {
                key: pod("ns/a"),
                value: b"v2".to_vec(),
                create_revision: a1.create_revision,
                mod_revision: deleted.mod_revision,
            },
            prev: Some(a2.clone()),
        },
    ];
    assert_eq!(events, expected);
    assert_eq!(deleted, expected[3].kv);

    // Replay continues into live events.
    let c = b.create(&pod("ns/c"), b"c".to_vec()).await?;
    assert_eq!(next_event(&mut watch).await?.kv, c);

    // A watch after a revision starts just after it.
    let mut later = b.watch(PODS, a1.mod_revision).await?;
    assert_eq!(next_event(&mut later).await?, expected[1]);
    Ok(())
}

async fn watch_filters_by_prefix(b: B) -> anyhow::Result<()> {
    let start = b.current_revision().await?;
    let ns1 = pod("ns1/");
    let mut live = b.watch(&ns1, 0).await?;
    b.create(&format!("{PODS2}ns1/x"), b"x".to_vec()).await?;
    b.create(&pod("ns2/y"), b"y".to_vec()).await?;
    let a = b.create(&pod("ns1/a"), b"a".to_vec()).await?;
    b.create("/registry/core/services/ns1/s", b"s".to_vec())
        .await?;
    b.create(&pod("ns1"), b"no slash".to_vec()).await?;
    let c = b.create(&pod("ns1/c"), b"c".to_vec()).await?;

    let events = next_events(&mut live, 2).await?;
    assert_eq!(
        summary(&events),
        [
            (EventKind::Create, a.key.as_str(), a.mod_revision),
            (EventKind::Create, c.key.as_str(), c.mod_revision),
        ]
    );
    let mut replay = b.watch(&ns1, start).await?;
    assert_eq!(next_events(&mut replay, 2).await?, events);

    // Nothing else was queued in between: the next event is the next matching write.
    let d = b.delete(&pod("ns1/a"), None).await?;
    assert_eq!(
        summary(&[next_event(&mut live).await?]),
        [(EventKind::Delete, d.key.as_str(), d.mod_revision)]
    );
    Ok(())
}

async fn watch_from_compacted_revision_replays_everything(b: B) -> anyhow::Result<()> {
    let first = b.create(&pod("ns/a"), b"a".to_vec()).await?;
    let second = b.create(&pod("ns/b"), b"b".to_vec()).await?;
    let oldest = b.compacted_revision().await?;
    assert!(
        oldest >= 1 && oldest < first.mod_revision,
        "compacted revision {oldest} of a new store"
    );
    let mut watch = b.watch("", oldest).await?;
    let events = next_events(&mut watch, 2).await?;
    assert_eq!(
        events.iter().map(|e| e.kv.clone()).collect::<Vec<_>>(),
        [first, second]
    );
    Ok(())
}

async fn concurrent_writers_are_acknowledged_and_watched_once(b: B) -> anyhow::Result<()> {
    const WRITERS: usize = 64;
    const WRITES: usize = 20;
    let start = b.current_revision().await?;
    let mut watch = b.watch(PODS, start).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let b = b.clone();
        tasks.spawn(async move {
            let mut acked = Vec::with_capacity(WRITES);
            for i in 0..WRITES {
                let key = pod(&format!("w{writer:02}/k{i:02}"));
                let kv = b
                    .create(&key, key.as_bytes().to_vec())
                    .await
                    .with_context(|| format!("creating {key}"))?;
                acked.push(kv);
            }
            anyhow::Ok(acked)
        });
    }
    let mut acked: HashMap<String, i64> = HashMap::new();
    while let Some(result) = tasks.join_next().await {
        for kv in result?? {
            ensure!(
                acked.insert(kv.key.clone(), kv.mod_revision).is_none(),
                "{} acknowledged twice",
                kv.key
            );
        }
    }
    assert_eq!(acked.len(), WRITERS * WRITES);

    let events = next_events(&mut watch, WRITERS * WRITES).await?;
    let mut last = start;
    for event in &events {
        ensure!(
            event.revision > last,
            "event {} after {last}: not in revision order",
            event.revision
        );
        last = event.revision;
        ensure!(
            event.kind == EventKind::Create,
            "unexpected {:?}",
            event.kind
        );
        let acked_revision = acked
            .remove(&event.kv.key)
            .with_context(|| format!("{} seen twice or never written", event.kv.key))?;
        ensure!(
            acked_revision == event.revision,
            "{} acknowledged at {acked_revision}, seen at {}",
            event.kv.key,
            event.revision
        );
    }
    ensure!(
        acked.is_empty(),
        "{} acknowledged writes never seen",
        acked.len()
    );
    assert_eq!(b.current_revision().await?, last);
    Ok(())
}

async fn slow_watcher_misses_nothing(b: B) -> anyhow::Result<()> {
    // More single-write commits than the in-process backends buffer for a watcher that does not read.
    const WRITES: usize = 600;
    let mut watch = b.watch(PODS, 0).await?;
    let mut written = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        written.push(
            b.create(&pod(&format!("ns/k{i:04}")), b"x".to_vec())
                .await?,
        );
    }
    let events = next_events(&mut watch, WRITES).await?;
    let seen: Vec<&KeyValue> = events.iter().map(|event| &event.kv).collect();
    let expected: Vec<&KeyValue> = written.iter().collect();
    assert!(
        seen == expected,
        "the slow watcher saw other events than were written"
    );
    Ok(())
}

async fn compaction_fails_older_watches(b: B) -> anyhow::Result<()> {
    let a1 = b.create(&pod("ns/a"), b"1".to_vec()).await?;
    let a2 = b
        .update(&pod("ns/a"), b"2".to_vec(), a1.mod_revision)
        .await?;
    let a3 = b
        .update(&pod("ns/a"), b"3".to_vec(), a2.mod_revision)
        .await?;
    let c = b.create(&pod("ns/c"), b"c".to_vec()).await?;

    b.compact(a2.mod_revision).await?;
    assert_eq!(b.compacted_revision().await?, a2.mod_revision);

    let err = watch_error(&b, PODS, a1.mod_revision).await?;
    assert!(
        matches!(err, StoreError::Compacted { requested, compacted } if requested == a1.mod_revision && compacted == a2.mod_revision),
        "{err:?}"
    );
    assert!(matches!(
        watch_error(&b, PODS, a1.mod_revision - 1).await?,
        StoreError::Compacted { .. }
    ));

    // From the compacted revision on, history is intact.
    let mut watch = b.watch(PODS, a2.mod_revision).await?;
    let events = next_events(&mut watch, 2).await?;
    assert_eq!(
        summary(&events),
        [
            (EventKind::Update, a3.key.as_str(), a3.mod_revision),
            (EventKind::Create, c.key.as_str(), c.mod_revision),
        ]
    );
    assert_eq!(events[0].prev.as_ref(), Some(&a2));

    // Compacting an older revision changes nothing; a future one is refused.
    b.compact(a1.mod_revision).await?;
    assert_eq!(b.compacted_revision().await?, a2.mod_revision);
    let current = b.current_revision().await?;
    let err = b
        .compact(current + 10)
        .await
        .expect_err("compacting the future must fail");
    assert!(
        matches!(err, StoreError::FutureRevision { requested, .. } if requested == current + 10),
        "{err:?}"
    );
    assert_eq!(b.get(&pod("ns/a")).await?, Some(a3));

    // Compacting everything still lets a watch start from now or from the current revision.
    b.compact(current).await?;
    let mut watch = b.watch(PODS, current).await?;
    let d = b.create(&pod("ns/d"), b"d".to_vec()).await?;
    assert_eq!(next_event(&mut watch).await?.kv, d);
    Ok(())
}

async fn repeated_compactions_keep_values_and_previous_values(b: B) -> anyhow::Result<()> {
    let a1 = b.create(&pod("ns/a"), b"a1".to_vec()).await?;
    let k1 = b.create(&pod("ns/b"), b"b1".to_vec()).await?;
    let c1 = b.create(&pod("ns/c"), b"c1".to_vec()).await?;
    let a2 = b.update(&a1.key, b"a2".to_vec(), a1.mod_revision).await?;
    b.delete(&k1.key, None).await?;
    let k2 = b.create(&k1.key, b"b2".to_vec()).await?;
    // Everything so far: a2, b2 and c1 are the last values, b1 and the delete are gone.
    b.compact(k2.mod_revision).await?;
    let first = b.compacted_revision().await?;

    let c2 = b.update(&c1.key, b"c2".to_vec(), c1.mod_revision).await?;
    let a3 = b.update(&a1.key, b"a3".to_vec(), a2.mod_revision).await?;
    let c_gone = b.delete(&c1.key, Some(c2.mod_revision)).await?;
    let d1 = b.create(&pod("ns/d"), b"d1".to_vec()).await?;
    assert_eq!(c_gone.value, c2.value);

    // The previous values of the first events after the compaction come from before it.
    let mut watch = b.watch(PODS, first).await?;
    let events = next_events(&mut watch, 4).await?;
    assert_eq!(
        summary(&events),
        [
            (EventKind::Update, c1.key.as_str(), c2.mod_revision),
            (EventKind::Update, a1.key.as_str(), a3.mod_revision),
            (EventKind::Delete, c1.key.as_str(), c_gone.mod_revision),
            (EventKind::Create, d1.key.as_str(), d1.mod_revision),
        ]
    );
    assert_eq!(events[0].prev.as_ref(), Some(&c1));
    assert_eq!(events[1].prev.as_ref(), Some(&a2));
    assert_eq!(events[2].kv, c_gone);
    assert_eq!(events[2].prev.as_ref(), Some(&c2));

    // A second compaction, past the updates of a and c.
    b.compact(a3.mod_revision).await?;
    let mut watch = b.watch(PODS, a3.mod_revision).await?;
    let events = next_events(&mut watch, 2).await?;
    assert_eq!(events[0].kv, c_gone);
    assert_eq!(events[0].prev.as_ref(), Some(&c2));
    assert_eq!(events[1].kv, d1);

    // Compacting everything keeps every live value.
    b.compact(b.current_revision().await?).await?;
    for kv in [&a3, &k2, &d1] {
        assert_eq!(b.get(&kv.key).await?.as_ref(), Some(kv));
    }
    assert_eq!(b.get(&c1.key).await?, None);
    let list = b
        .list(&ListOptions {
            prefix: PODS.into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(list.items, [a3.clone(), k2.clone(), d1.clone()]);
    let a4 = b.update(&a3.key, b"a4".to_vec(), a3.mod_revision).await?;
    let mut watch = b.watch(PODS, a4.mod_revision - 1).await?;
    assert_eq!(next_event(&mut watch).await?.prev.as_ref(), Some(&a3));
    Ok(())
}

async fn future_revision_is_refused(b: B) -> anyhow::Result<()> {
    b.create(&pod("ns/a"), b"1".to_vec()).await?;
    let current = b.current_revision().await?;
    let err = watch_error(&b, PODS, current + 5).await?;
    assert!(
        matches!(err, StoreError::FutureRevision { requested, current: reported } if requested == current + 5 && reported == current),
        "{err:?}"
    );
    // The current revision itself is fine: the watch waits for the next write.
    let mut watch = b.watch(PODS, current).await?;
    let next = b.create(&pod("ns/b"), b"1".to_vec()).await?;
    assert_eq!(next_event(&mut watch).await?.kv, next);
    Ok(())
}

// ---- embedded only ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_reopen_keeps_data_and_revisions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let (a2, gone, compacted, current, late) = {
        let b: B = Arc::new(EmbeddedBackend::open(&path)?);
        let a1 = b.create(&pod("ns/a"), b"1".to_vec()).await?;
        let a2 = b
            .update(&pod("ns/a"), b"2".to_vec(), a1.mod_revision)
            .await?;
        let gone = b.create(&pod("ns/gone"), b"x".to_vec()).await?;
        b.compact(a2.mod_revision).await?;
        let late = b.create(&pod("ns/late"), b"late".to_vec()).await?;
        b.delete(&gone.key, None).await?;
        (
            a2,
            gone,
            b.compacted_revision().await?,
            b.current_revision().await?,
            late,
        )
    };
    // The backend is dropped: its writer stopped and the file is closed, so it can be opened again.
    let b: B = Arc::new(EmbeddedBackend::open(&path)?);
    assert_eq!(b.current_revision().await?, current);
    assert_eq!(b.compacted_revision().await?, compacted);
    assert_eq!(b.get(&pod("ns/a")).await?, Some(a2));
    assert_eq!(b.get(&pod("ns/gone")).await?, None);
    assert_eq!(b.count(PODS).await?, 2);

    let mut watch = b.watch(PODS, compacted).await?;
    let events = next_events(&mut watch, 3).await?;
    assert_eq!(
        summary(&events),
        [
            (EventKind::Create, gone.key.as_str(), gone.mod_revision),
            (EventKind::Create, late.key.as_str(), late.mod_revision),
            (EventKind::Delete, gone.key.as_str(), current),
        ]
    );
    assert!(matches!(
        watch_error(&b, PODS, compacted - 1).await?,
        StoreError::Compacted { .. }
    ));

    let next = b.create(&pod("ns/next"), b"n".to_vec()).await?;
    assert_eq!(next.mod_revision, current + 1);
    assert_eq!(next_event(&mut watch).await?.kv, next);
    Ok(())
}

#[tokio::test]
async fn embedded_open_refuses_a_file_that_is_not_a_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    std::fs::write(
        &path,
        b"this is not a redb file, just some text that is long enough to look at",
    )?;
    let err = EmbeddedBackend::open(&path)
        .err()
        .context("opening garbage must fail")?;
    assert!(
        matches!(&err, StoreError::Backend(message) if message.contains("opening the store database")),
        "{err:?}"
    );
    Ok(())
}
