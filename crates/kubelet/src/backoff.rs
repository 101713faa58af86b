//! Per-key exponential back-off, upstream's `flowcontrol.Backoff`: the first failure is retried at once,
//! then after 10 s, doubling up to 5 min; an entry with no failure for twice the cap starts over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

#[derive(Clone, Copy, Debug)]
struct Entry {
    backoff: Duration,
    last_update: SystemTime,
}

/// Back-off entries by key (`<pod uid>/<container>` or `<pod uid>/<image>`).
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, entries: Mutex::new(HashMap::new()) }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self, e: &Entry, now: SystemTime) -> bool {
        now.duration_since(e.last_update).unwrap_or_default() > self.max * 2
    }

    /// The current delay of `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<Duration> {
        self.entries().get(key).map(|e| e.backoff)
    }

    /// Records a (re)try now: the first delay, or the previous one doubled up to the cap.
    pub fn next(&self, key: &str, now: SystemTime) {
        let mut entries = self.entries();
        let fresh = Entry { backoff: self.initial, last_update: now };
        match entries.get_mut(key) {
            Some(e) if !self.expired(e, now) => {
                e.backoff = (e.backoff * 2).min(self.max);
                e.last_update = now;
            }
            _ => {
                entries.insert(key.to_string(), fresh);
            }
        }
    }

    /// Whether an event at `since` (a container's finish, a failed pull) is still inside `key`'s delay;
    /// returns the delay and how long is left.
    pub fn in_backoff_since(&self, key: &str, since: SystemTime, now: SystemTime) -> Option<(Duration, Duration)> {
        let entries = self.entries();
        let e = entries.get(key)?;
        if self.expired(e, now) {
            return None;
        }
        let elapsed = now.duration_since(since).unwrap_or_default();
        (elapsed < e.backoff).then(|| (e.backoff, e.backoff - elapsed))
    }

    /// Whether `key` was retried less than its delay ago (upstream's `IsInBackOffSinceUpdate`); returns
    /// how long is left.
    pub fn in_backoff_since_update(&self, key: &str, now: SystemTime) -> Option<Duration> {
        let last = self.entries().get(key)?.last_update;
        self.in_backoff_since(key, last, now).map(|(_, left)| left)
    }

    /// Forgets every key starting with `prefix` (a pod that went away).
    pub fn forget_prefix(&self, prefix: &str) {
        self.entries().retain(|k, _| !k.starts_with(prefix));
    }
}

/// Formats a delay as Go's `time.Duration.String()` does for whole seconds and milliseconds (`10s`, `5m0s`,
/// `200ms`), as in upstream's back-off messages.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let m = (secs / 60.0).floor() as u64;
    let s = secs - (m * 60) as f64;
    let s = if s.fract() == 0.0 { format!("{}", s as u64) } else { format!("{s}") };
    if m == 0 {
        format!("{s}s")
    } else if m < 60 {
        format!("{m}m{s}s")
    } else {
        format!("{}h{}m{s}s", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_expires() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(b.in_backoff_since("k", t0, t0).is_none());
        b.next("k", t0);
        assert_eq!(b.get("k"), Some(Duration::from_secs(10)));
        let (delay, left) = b.in_backoff_since("k", t0, t0 + Duration::from_secs(4)).unwrap();
        assert_eq!((delay, left), (Duration::from_secs(10), Duration::from_secs(6)));
        assert!(b.in_backoff_since("k", t0, t0 + Duration::from_secs(11)).is_none());
        for _ in 0..10 {
            b.next("k", t0 + Duration::from_secs(20));
        }
        assert_eq!(b.get("k"), Some(Duration::from_secs(300)));
        b.next("k", t0 + Duration::from_secs(20 + 601));
        assert_eq!(b.get("k"), Some(Duration::from_secs(10)));
        b.forget_prefix("k");
        assert_eq!(b.get("k"), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
    }
}
