//! The embedded store's key index changes that are not in the `kv` table yet: every write since the
//! last checkpoint, per key, in revision order.
//!
//! Each durable commit only appends to the `log` table (its pages are new and adjacent); the `kv` table,
//! whose updates dirty one scattered page per key written, is brought up to date by a checkpoint every
//! [`super::CHECKPOINT_CHANGES`] changes, or with a compaction. Readers see the `kv` table of their
//! snapshot overlaid with the changes up to their snapshot's revision; at open, the changes after the
//! last checkpoint are read back from the `log`.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::Revision;

/// A key's create and mod revisions, or `None` once deleted.
pub(super) type KeyState = Option<(Revision, Revision)>;

/// One write to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Change {
    pub(super) revision: Revision,
    pub(super) state: KeyState,
}

/// The changes since the last checkpoint.
#[derive(Debug, Default)]
pub(super) struct PendingIndex {
    /// Per key, its changes in revision order.
    changes: BTreeMap<String, Vec<Change>>,
    len: usize,
}

impl PendingIndex {
    /// How many changes are held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds a change, newer than every change held for the key.
    pub(super) fn record(&mut self, key: &str, change: Change) {
        match self.changes.get_mut(key) {
            Some(changes) => {
                debug_assert!(
                    changes
                        .last()
                        .is_none_or(|last| last.revision < change.revision)
                );
                changes.push(change);
            }
            None => {
                self.changes.insert(key.to_owned(), vec![change]);
            }
        }
        self.len += 1;
    }

    /// The state of `key` after its last change held, if any.
    pub(super) fn latest(&self, key: &str) -> Option<KeyState> {
        self.changes
            .get(key)
            .and_then(|changes| changes.last())
            .map(|change| change.state)
    }

    /// The latest state of every key with a change held.
    pub(super) fn latest_states(&self) -> impl Iterator<Item = (&str, KeyState)> {
        self.changes
            .iter()
            .filter_map(|(key, changes)| changes.last().map(|change| (key.as_str(), change.state)))
    }

    /// The state at `revision` of every key from `start` on that starts with `prefix` and has a change
    /// up to `revision`.
    pub(super) fn view(
        &self,
        start: Bound<&str>,
        prefix: &str,
        revision: Revision,
    ) -> BTreeMap<String, KeyState> {
        self.changes
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(key, changes)| {
                let at = changes.iter().rev().find(|c| c.revision <= revision)?;
                Some((key.clone(), at.state))
            })
            .collect()
    }

    /// The state at `revision` of `key`, if it has a change up to `revision`.
    pub(super) fn get_at(&self, key: &str, revision: Revision) -> Option<KeyState> {
        let changes = self.changes.get(key)?;
        changes
            .iter()
            .rev()
            .find(|c| c.revision <= revision)
            .map(|c| c.state)
    }

    /// The changes held, per key.
    pub(super) fn into_changes(self) -> BTreeMap<String, Vec<Change>> {
        self.changes
    }

    /// Forgets the changes after `revision` (those of a batch that failed to commit).
    pub(super) fn forget_after(&mut self, revision: Revision) {
        self.retain(|change| change.revision <= revision);
    }

    /// Forgets the changes up to `revision` (now in the `kv` table).
    pub(super) fn forget_through(&mut self, revision: Revision) {
        self.retain(|change| change.revision > revision);
    }

    fn retain(&mut self, keep: impl Fn(&Change) -> bool) {
        let mut len = 0;
        self.changes.retain(|_, changes| {
            changes.retain(&keep);
            len += changes.len();
            !changes.is_empty()
        });
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: Revision, state: KeyState) -> Change {
        Change { revision, state }
    }

    #[test]
    fn views_see_changes_up_to_their_revision() {
        let mut index = PendingIndex::default();
        index.record("/a", change(2, Some((2, 2))));
        index.record("/b", change(3, Some((3, 3))));
        index.record("/a", change(4, Some((2, 4))));
        index.record("/b", change(5, None));
        index.record("/c", change(6, Some((6, 6))));
        assert_eq!(index.len(), 5);
        assert_eq!(index.latest("/a"), Some(Some((2, 4))));
        assert_eq!(index.latest("/b"), Some(None));
        assert_eq!(index.latest("/d"), None);
        assert_eq!(index.get_at("/a", 3), Some(Some((2, 2))));
        assert_eq!(index.get_at("/a", 1), None);
        assert_eq!(index.get_at("/b", 5), Some(None));

        let view = index.view(Bound::Included("/"), "/", 4);
        assert_eq!(
            view.into_iter().collect::<Vec<_>>(),
            [
                ("/a".to_owned(), Some((2, 4))),
                ("/b".to_owned(), Some((3, 3)))
            ]
        );
        let view = index.view(Bound::Excluded("/a"), "/", 6);
        assert_eq!(
            view.into_iter().collect::<Vec<_>>(),
            [("/b".to_owned(), None), ("/c".to_owned(), Some((6, 6)))]
        );
        assert!(index.view(Bound::Included("/x"), "/x", 6).is_empty());
    }

    #[test]
    fn forgetting_keeps_the_other_changes() {
        let mut index = PendingIndex::default();
        index.record("/a", change(2, Some((2, 2))));
        index.record("/b", change(3, Some((3, 3))));
        index.record("/a", change(4, Some((2, 4))));
        index.forget_after(3);
        assert_eq!(index.len(), 2);
        assert_eq!(index.latest("/a"), Some(Some((2, 2))));
        index.record("/a", change(4, None));
        index.forget_through(3);
        assert_eq!(index.len(), 1);
        assert_eq!(index.latest("/b"), None);
        assert_eq!(index.latest_states().collect::<Vec<_>>(), [("/a", None)]);
    }
}
