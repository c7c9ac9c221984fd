//! The state store: the single source of truth for what the exporter knows.
//!
//! Per image set: the last snapshot, when its workflow status was first observed, and poll
//! health; plus the transition counters. Polls write through [`Store::record_success`] and
//! [`Store::record_failure`]; the metrics collector reads a consistent view with
//! [`Store::read`]. Locks are held briefly and never across an `.await`.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::config::ImageSetTarget;
use crate::ids::{DatastoreId, ImageSetKey, VersionId};
use crate::model::{DatastoreSummary, EpochSeconds, ImageSetSummary, Snapshot, VersionRecord};
use crate::source::{ErrorKind, SourceError};
use crate::transitions::{self, EventKind, Transition};

/// What the store knows about one image set.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Whether the image set is configured or discovered.
    pub origin: Origin,
    /// What SearchImageSets last said about a discovered image set not yet read.
    pub listed: Option<ImageSetSummary>,
    /// A pinned version from the config; latest when `None`.
    pub pinned_version: Option<VersionId>,
    /// The last successfully read properties.
    pub snapshot: Option<Snapshot>,
    /// When the current workflow status was first observed (updatedAt on first sight).
    pub status_since: Option<EpochSeconds>,
    /// Whether the last poll succeeded.
    pub up: bool,
    /// When a poll last succeeded.
    pub last_success: Option<EpochSeconds>,
    /// The kind of the last error, until a poll succeeds again.
    pub last_error: Option<ErrorKind>,
    /// GetImageSet answered 404 after the image set had been seen.
    pub gone: bool,
    /// The snapshot came from the state file and has not been re-read since the start.
    pub restored: bool,
}

/// Where a watched image set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An `[[image_sets]]` entry.
    Configured,
    /// Found by a `[[discovery]]` rule.
    Discovered,
}

impl Entry {
    /// An entry restored from the state file: known, not up until polled again.
    pub fn restored(pinned_version: Option<VersionId>, origin: Origin, snapshot: Snapshot) -> Self {
        Entry {
            snapshot: Some(snapshot),
            restored: true,
            ..Entry::new(pinned_version, origin)
        }
    }

    fn new(pinned_version: Option<VersionId>, origin: Origin) -> Self {
        Entry {
            origin,
            listed: None,
            pinned_version,
            snapshot: None,
            status_since: None,
            up: false,
            last_success: None,
            last_error: None,
            gone: false,
            restored: false,
        }
    }
}

/// Transition counter key: (datastore, from, to).
pub type TransitionKey = (DatastoreId, String, String);

/// Everything the store holds.
#[derive(Debug, Default)]
pub struct State {
    /// Per image set, ordered for stable rendering.
    pub entries: BTreeMap<ImageSetKey, Entry>,
    /// `healthimaging_workflow_transitions_total`.
    pub workflow_transitions: BTreeMap<TransitionKey, u64>,
    /// `healthimaging_storage_tier_transitions_total`.
    pub storage_tier_transitions: BTreeMap<TransitionKey, u64>,
    /// Datastores as ListDatastores/GetDatastore last described them.
    pub datastores: BTreeMap<DatastoreId, DatastoreSummary>,
    /// When each discovery sweep of a datastore last completed (epoch seconds).
    pub sweeps: BTreeMap<(DatastoreId, Sweep), EpochSeconds>,
}

/// The kinds of discovery sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sweep {
    /// Image sets updated since the previous search.
    Changes,
    /// Every image set (first discovery and reconciliation).
    Full,
}

impl Sweep {
    /// The `sweep` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Sweep::Changes => "changes",
            Sweep::Full => "full",
        }
    }
}

/// A transition recovered from ListImageSetVersions for a version the polls skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Backfilled {
    /// The version it happened in.
    pub version: VersionId,
    /// That version's API message.
    pub message: Option<String>,
    /// The transition.
    pub transition: Transition,
}

/// The result of recording a successful poll.
#[derive(Debug, Default, PartialEq)]
pub struct SuccessUpdate {
    /// Transitions into versions between the previous poll and this one (oldest first).
    pub backfilled: Vec<Backfilled>,
    /// The first read after a restart: the transitions happened between these epoch
    /// seconds (last success before the restart, now), while the exporter was down.
    pub downtime: Option<(EpochSeconds, EpochSeconds)>,
    /// Detected transitions (empty on first sight).
    pub transitions: Vec<Transition>,
    /// First successful read of this image set.
    pub first_sight: bool,
    /// The error kind that preceded this success, if any.
    pub recovered_from: Option<ErrorKind>,
}

/// The result of recording a failed poll.
#[derive(Debug, Default, PartialEq)]
pub struct FailureUpdate {
    /// The error kind differs from the previous poll's: log it (once per change).
    pub newly_failing: bool,
    /// The image set disappeared: an `image_set_gone` event.
    pub gone: Option<Transition>,
    /// Version of the last snapshot, for the event.
    pub last_version: Option<VersionId>,
    /// The image set was found by discovery (a 404 means it went away, not a typo).
    pub discovered: bool,
}

/// Thread-safe holder of [`State`].
#[derive(Debug, Default)]
pub struct Store {
    state: RwLock<State>,
}

impl Store {
    /// A store tracking `targets`, with nothing known yet.
    pub fn new(targets: &[ImageSetTarget]) -> Self {
        let entries = targets
            .iter()
            .map(|t| (t.key(), Entry::new(t.version_id, Origin::Configured)))
            .collect();
        Store {
            state: RwLock::new(State {
                entries,
                ..State::default()
            }),
        }
    }

    /// A read view; hold it only while rendering.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // A writer that panicked left a state that is still coherent per field.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a successful poll at `now` and returns what changed.
    pub fn record_success(
        &self,
        key: &ImageSetKey,
        snapshot: Snapshot,
        now: EpochSeconds,
    ) -> SuccessUpdate {
        self.record_success_after(key, &[], snapshot, now)
    }

    /// Like [`Store::record_success`], first replaying `history` (versions between the
    /// last known one and `snapshot`, from ListImageSetVersions) so that transitions the
    /// polls skipped are counted and reported as backfilled.
    pub fn record_success_after(
        &self,
        key: &ImageSetKey,
        history: &[VersionRecord],
        snapshot: Snapshot,
        now: EpochSeconds,
    ) -> SuccessUpdate {
        let mut state = self.write();
        let State {
            entries,
            workflow_transitions,
            storage_tier_transitions,
            ..
        } = &mut *state;
        let entry = entries
            .entry(*key)
            .or_insert_with(|| Entry::new(None, Origin::Configured));
        let mut update = SuccessUpdate {
            recovered_from: entry.last_error.take(),
            downtime: std::mem::take(&mut entry.restored)
                .then(|| (entry.last_success.unwrap_or(0.0), now)),
            ..SuccessUpdate::default()
        };
        let mut count = |entry: &mut Entry, ts: &[Transition]| {
            for t in ts {
                let counter = match t.kind {
                    EventKind::WorkflowStatusChanged => {
                        entry.status_since = Some(now);
                        &mut *workflow_transitions
                    }
                    EventKind::StorageTierChanged => &mut *storage_tier_transitions,
                    _ => continue,
                };
                *counter
                    .entry((key.datastore_id, t.from.clone(), t.to.clone()))
                    .or_default() += 1;
            }
        };
        match entry.snapshot.take() {
            None => {
                update.first_sight = true;
                entry.status_since = Some(snapshot.updated_at.unwrap_or(now));
            }
            Some(mut old) => {
                let mut skipped: Vec<&VersionRecord> = history
                    .iter()
                    .filter(|r| r.version_id > old.version_id && r.version_id < snapshot.version_id)
                    .collect();
                skipped.sort_by_key(|r| r.version_id);
                skipped.dedup_by_key(|r| r.version_id);
                for record in skipped {
                    let between = record.apply_to(&old);
                    let found = transitions::diff(&old, &between);
                    count(entry, &found);
                    update
                        .backfilled
                        .extend(found.into_iter().map(|transition| Backfilled {
                            version: between.version_id,
                            message: between.message.clone(),
                            transition,
                        }));
                    old = between;
                }
                update.transitions = transitions::diff(&old, &snapshot);
                count(entry, &update.transitions);
            }
        }
        entry.listed = None;
        entry.snapshot = Some(snapshot);
        entry.up = true;
        entry.gone = false;
        entry.last_success = Some(now);
        update
    }

    /// The version of `key` last read by GetImageSet, if any.
    pub fn known_version(&self, key: &ImageSetKey) -> Option<VersionId> {
        self.read()
            .entries
            .get(key)
            .and_then(|e| e.snapshot.as_ref())
            .map(|s| s.version_id)
    }

    /// Records a discovered image set as SearchImageSets listed it; returns true if it is
    /// new. Properties already read by GetImageSet are kept (they are more complete).
    pub fn record_listed(&self, datastore: DatastoreId, summary: ImageSetSummary) -> bool {
        let key = ImageSetKey {
            datastore_id: datastore,
            image_set_id: summary.image_set_id,
        };
        let mut state = self.write();
        let mut new = false;
        let entry = state.entries.entry(key).or_insert_with(|| {
            new = true;
            Entry::new(None, Origin::Discovered)
        });
        if entry.snapshot.is_none() {
            entry.listed = Some(summary);
        }
        new
    }

    /// Records what ListDatastores/GetDatastore said about a datastore.
    pub fn record_datastore(&self, datastore: DatastoreSummary) {
        self.write().datastores.insert(datastore.id, datastore);
    }

    /// Restores the state file's image sets and counters: configured ones that are still
    /// configured, discovered ones that `keep_discovered` accepts. Returns the discovered
    /// image sets restored (the poller must watch them).
    pub fn restore(
        &self,
        saved: &crate::persistence::Saved,
        keep_discovered: impl Fn(&ImageSetKey) -> bool,
    ) -> Vec<ImageSetKey> {
        let mut state = self.write();
        let mut discovered = Vec::new();
        for s in &saved.image_sets {
            let key = s.key();
            match state.entries.get_mut(&key) {
                Some(entry) if entry.origin == Origin::Configured => {
                    let pinned = entry.pinned_version;
                    if pinned.is_none_or(|v| v == s.snapshot.version_id) {
                        let mut restored = s.entry(pinned);
                        restored.origin = Origin::Configured;
                        *entry = restored;
                    }
                }
                Some(_) => {}
                None if s.discovered && keep_discovered(&key) => {
                    state.entries.insert(key, s.entry(None));
                    discovered.push(key);
                }
                None => {}
            }
        }
        let State {
            workflow_transitions,
            storage_tier_transitions,
            ..
        } = &mut *state;
        for (table, counts) in [
            (workflow_transitions, &saved.workflow_transitions),
            (storage_tier_transitions, &saved.storage_tier_transitions),
        ] {
            for c in counts {
                *table
                    .entry((c.datastore_id, c.from.clone(), c.to.clone()))
                    .or_default() += c.count;
            }
        }
        discovered
    }

    /// Re-targets after a config reload: configured image sets are exactly `targets`
    /// (existing entries and their history kept), discovered ones are kept only if
    /// `keep_discovered` says so. Returns the discovered image sets kept.
    pub fn retarget(
        &self,
        targets: &[ImageSetTarget],
        keep_discovered: impl Fn(&ImageSetKey) -> bool,
    ) -> Vec<ImageSetKey> {
        let wanted: std::collections::HashMap<ImageSetKey, Option<VersionId>> =
            targets.iter().map(|t| (t.key(), t.version_id)).collect();
        let mut state = self.write();
        state.entries.retain(|key, e| match wanted.get(key) {
            // A changed pinned version is another target: start it afresh.
            Some(pinned) => e.origin == Origin::Discovered || e.pinned_version == *pinned,
            None => e.origin == Origin::Discovered && keep_discovered(key),
        });
        for (key, pinned) in &wanted {
            let entry = state
                .entries
                .entry(*key)
                .or_insert_with(|| Entry::new(*pinned, Origin::Configured));
            entry.origin = Origin::Configured;
        }
        state
            .entries
            .iter()
            .filter(|(_, e)| e.origin == Origin::Discovered)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Drops a datastore discovery no longer sweeps: its sweep times, and with `entirely`
    /// also its name and status (it is not listed any more).
    pub fn forget_datastore(&self, datastore: DatastoreId, entirely: bool) {
        let mut state = self.write();
        state.sweeps.retain(|(id, _), _| *id != datastore);
        if entirely {
            state.datastores.remove(&datastore);
        }
    }

    /// Records that a discovery sweep of `datastore` completed at `now`.
    pub fn record_sweep(&self, datastore: DatastoreId, sweep: Sweep, now: EpochSeconds) {
        self.write().sweeps.insert((datastore, sweep), now);
    }

    /// Records a failed poll; the last snapshot stays as it was.
    pub fn record_failure(&self, key: &ImageSetKey, error: &SourceError) -> FailureUpdate {
        let mut state = self.write();
        let entry = state
            .entries
            .entry(*key)
            .or_insert_with(|| Entry::new(None, Origin::Configured));
        entry.up = false;
        let mut update = FailureUpdate {
            newly_failing: entry.last_error != Some(error.kind),
            last_version: entry.snapshot.as_ref().map(|s| s.version_id),
            gone: None,
            discovered: entry.origin == Origin::Discovered,
        };
        entry.last_error = Some(error.kind);
        if error.kind == ErrorKind::NotFound && !entry.gone {
            if let Some(last) = &entry.snapshot {
                entry.gone = true;
                update.gone = Some(transitions::gone(last));
            }
        }
        update
    }

    /// Stops tracking an image set: its series disappear from `/metrics`.
    pub fn forget(&self, key: &ImageSetKey) {
        self.write().entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ImageSetId;
    use crate::model::{ImageSetState, StorageTier, WorkflowStatus};

    fn key() -> ImageSetKey {
        ImageSetKey {
            datastore_id: DatastoreId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            image_set_id: ImageSetId::parse("fedcba9876543210fedcba9876543210").unwrap(),
        }
    }

    fn store() -> Store {
        Store::new(&[ImageSetTarget {
            datastore_id: key().datastore_id,
            image_set_id: key().image_set_id,
            version_id: None,
        }])
    }

    fn snap(status: &str, tier: &str) -> Snapshot {
        Snapshot {
            version_id: VersionId::new(1),
            workflow_status: Some(WorkflowStatus::from_api(status)),
            state: ImageSetState::Active,
            storage_tier: Some(StorageTier::from_api(tier)),
            image_set_arn: None,
            is_primary: None,
            forced: None,
            message: None,
            created_at: Some(100.0),
            updated_at: Some(500.0),
            deleted_at: None,
            last_accessed_at: None,
        }
    }

    fn error(kind: ErrorKind) -> SourceError {
        SourceError::new(kind, "test")
    }

    #[test]
    fn first_sight_is_no_transition_and_uses_updated_at() {
        let s = store();
        let u = s.record_success(&key(), snap("IMPORTING", "FREQUENT_ACCESS"), 1000.0);
        assert!(u.first_sight && u.transitions.is_empty());
        let state = s.read();
        let e = &state.entries[&key()];
        assert_eq!(e.status_since, Some(500.0));
        assert!(e.up);
        assert!(state.workflow_transitions.is_empty());
    }

    #[test]
    fn transitions_are_counted_and_restart_the_status_clock() {
        let s = store();
        s.record_success(&key(), snap("IMPORTING", "FREQUENT_ACCESS"), 1000.0);
        s.record_success(&key(), snap("IMPORTING", "FREQUENT_ACCESS"), 1060.0);
        let u = s.record_success(
            &key(),
            snap("IMPORT_FAILED", "ARCHIVE_INSTANT_ACCESS"),
            1120.0,
        );
        assert_eq!(u.transitions.len(), 2);
        let state = s.read();
        assert_eq!(state.entries[&key()].status_since, Some(1120.0));
        let k = |a: &str, b: &str| (key().datastore_id, a.to_string(), b.to_string());
        assert_eq!(
            state.workflow_transitions[&k("IMPORTING", "IMPORT_FAILED")],
            1
        );
        assert_eq!(
            state.storage_tier_transitions[&k("FREQUENT_ACCESS", "ARCHIVE_INSTANT_ACCESS")],
            1
        );
    }

    #[test]
    fn failures_keep_the_snapshot_and_are_reported_once_per_kind() {
        let s = store();
        s.record_success(&key(), snap("IMPORTED", "FREQUENT_ACCESS"), 1000.0);
        assert!(
            s.record_failure(&key(), &error(ErrorKind::Throttled))
                .newly_failing
        );
        assert!(
            !s.record_failure(&key(), &error(ErrorKind::Throttled))
                .newly_failing
        );
        assert!(
            s.record_failure(&key(), &error(ErrorKind::ServerError))
                .newly_failing
        );
        {
            let state = s.read();
            let e = &state.entries[&key()];
            assert!(!e.up);
            assert!(e.snapshot.is_some());
            assert_eq!(e.last_success, Some(1000.0));
        }
        let u = s.record_success(&key(), snap("IMPORTED", "FREQUENT_ACCESS"), 1100.0);
        assert_eq!(u.recovered_from, Some(ErrorKind::ServerError));
        assert!(
            s.record_failure(&key(), &error(ErrorKind::Throttled))
                .newly_failing
        );
    }

    #[test]
    fn not_found_after_sight_is_gone_once() {
        let s = store();
        let before = s.record_failure(&key(), &error(ErrorKind::NotFound));
        assert!(
            before.gone.is_none(),
            "never seen: a configuration problem, not a disappearance"
        );
        s.record_success(&key(), snap("DELETING", "FREQUENT_ACCESS"), 1000.0);
        let first = s.record_failure(&key(), &error(ErrorKind::NotFound));
        assert_eq!(first.gone.map(|t| t.kind), Some(EventKind::ImageSetGone));
        assert!(s
            .record_failure(&key(), &error(ErrorKind::NotFound))
            .gone
            .is_none());
    }

    fn record(version: u64, status: &str) -> VersionRecord {
        VersionRecord {
            version_id: VersionId::new(version),
            workflow_status: Some(WorkflowStatus::from_api(status)),
            state: ImageSetState::Active,
            is_primary: Some(true),
            forced: None,
            message: (status == "UPDATE_FAILED").then(|| "bad tag".to_string()),
            updated_at: Some(600.0 + version as f64),
            deleted_at: None,
        }
    }

    #[test]
    fn skipped_versions_are_backfilled_in_order_and_counted() {
        let s = store();
        let mut v1 = snap("UPDATED", "FREQUENT_ACCESS");
        v1.version_id = VersionId::new(1);
        s.record_success(&key(), v1, 1000.0);
        let mut v3 = snap("UPDATED", "FREQUENT_ACCESS");
        v3.version_id = VersionId::new(3);
        // In any order; versions outside (1, 3) are ignored.
        let history = [
            record(1, "UPDATED"),
            record(3, "UPDATED"),
            record(2, "UPDATE_FAILED"),
        ];
        let u = s.record_success_after(&key(), &history, v3, 1060.0);
        let backfilled: Vec<_> = u
            .backfilled
            .iter()
            .map(|b| (b.version.get(), b.transition.kind, b.transition.to.as_str()))
            .collect();
        assert_eq!(
            backfilled,
            [
                (2, EventKind::VersionChanged, "2"),
                (2, EventKind::WorkflowStatusChanged, "UPDATE_FAILED"),
            ]
        );
        assert_eq!(u.backfilled[0].message.as_deref(), Some("bad tag"));
        let observed: Vec<_> = u
            .transitions
            .iter()
            .map(|t| (t.kind, t.to.as_str()))
            .collect();
        assert_eq!(
            observed,
            [
                (EventKind::VersionChanged, "3"),
                (EventKind::WorkflowStatusChanged, "UPDATED")
            ]
        );
        let state = s.read();
        let count = |from: &str, to: &str| {
            state.workflow_transitions[&(key().datastore_id, from.to_string(), to.to_string())]
        };
        assert_eq!(count("UPDATED", "UPDATE_FAILED"), 1);
        assert_eq!(count("UPDATE_FAILED", "UPDATED"), 1);
    }

    #[test]
    fn listed_image_sets_are_added_once_and_never_overwrite_a_poll() {
        let s = Store::new(&[]);
        let summary = ImageSetSummary {
            image_set_id: key().image_set_id,
            version: Some(VersionId::new(1)),
            created_at: None,
            updated_at: Some(5.0),
            storage_tier: None,
            is_primary: None,
        };
        assert!(s.record_listed(key().datastore_id, summary.clone()));
        assert!(!s.record_listed(key().datastore_id, summary.clone()));
        assert_eq!(s.read().entries[&key()].origin, Origin::Discovered);
        s.record_success(&key(), snap("IMPORTED", "FREQUENT_ACCESS"), 10.0);
        s.record_listed(key().datastore_id, summary);
        let state = s.read();
        let e = &state.entries[&key()];
        assert!(e.listed.is_none() && e.snapshot.is_some());
    }
}
