//! Which slice writes the controller made that its cache has not shown yet (upstream's
//! `EndpointSliceTracker`): a sync that would read a stale cache waits instead, so it never creates a
//! second slice for endpoints it just wrote.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;

/// How long an unseen write is waited for before the cache is trusted anyway.
const FORGET_AFTER: Duration = Duration::from_secs(30);

/// Slice name -> what the cache should show, and since when.
type Expected = HashMap<String, (Expect, Instant)>;

#[derive(Default)]
pub struct Tracker {
    /// By Service key.
    expected: Mutex<HashMap<String, Expected>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Present at this resourceVersion or a later one.
    AtLeast(u64),
    Gone,
}

fn rv(slice: &EndpointSlice) -> Option<u64> {
    slice.metadata.resource_version.as_deref()?.parse().ok()
}

impl Tracker {
    /// The controller created or updated `slice` (as the API server answered).
    pub fn written(&self, service_key: &str, slice: &EndpointSlice) {
        let (Some(name), Some(rv)) = (slice.metadata.name.clone(), rv(slice)) else { return };
        let mut m = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(service_key.to_string()).or_default().insert(name, (Expect::AtLeast(rv), Instant::now()));
    }

    /// The controller deleted the slice `name`.
    pub fn deleted(&self, service_key: &str, name: &str) {
        let mut m = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(service_key.to_string()).or_default().insert(name.to_string(), (Expect::Gone, Instant::now()));
    }

    /// The cache saw the slice deleted: nothing more to wait for about it.
    pub fn forget_slice(&self, service_key: &str, name: &str) {
        let mut m = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slices) = m.get_mut(service_key) {
            slices.remove(name);
        }
    }

    /// Whether `cached` (the Service's slices in the cache) misses a write of this controller; writes the
    /// cache shows are settled.
    pub fn stale(&self, service_key: &str, cached: &[EndpointSlice]) -> bool {
        let mut m = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slices) = m.get_mut(service_key) else { return false };
        slices.retain(|name, (expect, since)| {
            if since.elapsed() > FORGET_AFTER {
                return false;
            }
            let seen = cached.iter().find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            match (*expect, seen) {
                (Expect::AtLeast(want), Some(s)) => rv(s).is_some_and(|have| have < want),
                (Expect::AtLeast(_), None) => true,
                (Expect::Gone, seen) => seen.is_some(),
            }
        });
        let stale = !slices.is_empty();
        if !stale {
            m.remove(service_key);
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, rv: u64) -> EndpointSlice {
        let mut s = EndpointSlice { address_type: "IPv4".into(), ..Default::default() };
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(rv.to_string());
        s
    }

    #[test]
    fn stale_until_the_cache_shows_the_writes() {
        let t = Tracker::default();
        assert!(!t.stale("ns/web", &[]));
        t.written("ns/web", &slice("web-a", 10));
        assert!(t.stale("ns/web", &[]));
        assert!(t.stale("ns/web", &[slice("web-a", 9)]));
        assert!(!t.stale("ns/web", &[slice("web-a", 10)]));
        t.deleted("ns/web", "web-b");
        assert!(t.stale("ns/web", &[slice("web-b", 3)]));
        assert!(!t.stale("ns/web", &[]));
        t.written("ns/web", &slice("web-c", 4));
        t.forget_slice("ns/web", "web-c");
        assert!(!t.stale("ns/web", &[]));
    }
}
