//! Transition detection: a pure function from the previous and the new snapshot of an
//! image set to the events the log contract names.

use crate::model::Snapshot;

/// The kinds of event in the log contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The workflow status changed.
    WorkflowStatusChanged,
    /// The image set state changed.
    StateChanged,
    /// The storage tier changed.
    StorageTierChanged,
    /// The version changed.
    VersionChanged,
    /// GetImageSet answered 404 for an image set seen before.
    ImageSetGone,
}

impl EventKind {
    /// The `event` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::WorkflowStatusChanged => "workflow_status_changed",
            EventKind::StateChanged => "state_changed",
            EventKind::StorageTierChanged => "storage_tier_changed",
            EventKind::VersionChanged => "version_changed",
            EventKind::ImageSetGone => "image_set_gone",
        }
    }
}

/// Value logged for a field the API did not send.
pub const ABSENT: &str = "unknown";

/// Value of `to` in an `image_set_gone` event.
pub const GONE: &str = "gone";

/// One detected change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// What changed.
    pub kind: EventKind,
    /// The previous value.
    pub from: String,
    /// The new value.
    pub to: String,
}

impl Transition {
    /// True when a workflow moved into a failed status (logged at WARN).
    pub fn is_failure(&self) -> bool {
        self.kind == EventKind::WorkflowStatusChanged && self.to.ends_with("_FAILED")
    }
}

fn text<T: AsRef<str>>(value: Option<T>) -> String {
    value.map_or_else(|| ABSENT.to_string(), |v| v.as_ref().to_string())
}

/// The events between two snapshots of the same image set, version change first.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Transition> {
    let mut events = Vec::new();
    let mut push = |kind, from: String, to: String| {
        if from != to {
            events.push(Transition { kind, from, to });
        }
    };
    push(
        EventKind::VersionChanged,
        old.version_id.to_string(),
        new.version_id.to_string(),
    );
    push(
        EventKind::WorkflowStatusChanged,
        text(old.workflow_status.as_ref().map(|s| s.as_str())),
        text(new.workflow_status.as_ref().map(|s| s.as_str())),
    );
    push(
        EventKind::StateChanged,
        old.state.as_str().to_string(),
        new.state.as_str().to_string(),
    );
    push(
        EventKind::StorageTierChanged,
        text(old.storage_tier.as_ref().map(|s| s.as_str())),
        text(new.storage_tier.as_ref().map(|s| s.as_str())),
    );
    events
}

/// The event for an image set that disappeared (404 after having been seen).
pub fn gone(last: &Snapshot) -> Transition {
    Transition {
        kind: EventKind::ImageSetGone,
        from: text(last.workflow_status.as_ref().map(|s| s.as_str())),
        to: GONE.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VersionId;
    use crate::model::{ImageSetState, StorageTier, WorkflowStatus};

    fn snap(version: u64, status: &str, state: &str, tier: &str) -> Snapshot {
        Snapshot {
            version_id: VersionId::new(version),
            workflow_status: Some(WorkflowStatus::from_api(status)),
            state: ImageSetState::from_api(state),
            storage_tier: Some(StorageTier::from_api(tier)),
            image_set_arn: None,
            is_primary: Some(true),
            forced: None,
            message: None,
            created_at: Some(1.0),
            updated_at: Some(2.0),
            deleted_at: None,
            last_accessed_at: None,
        }
    }

    fn kinds(events: &[Transition]) -> Vec<(&'static str, &str, &str)> {
        events
            .iter()
            .map(|e| (e.kind.as_str(), e.from.as_str(), e.to.as_str()))
            .collect()
    }

    #[test]
    fn identical_snapshots_yield_nothing() {
        let a = snap(1, "IMPORTED", "ACTIVE", "FREQUENT_ACCESS");
        let mut b = a.clone();
        b.updated_at = Some(99.0);
        b.message = Some("noise".into());
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn each_property_change_is_one_event() {
        let a = snap(1, "IMPORTING", "ACTIVE", "FREQUENT_ACCESS");
        let b = snap(2, "IMPORT_FAILED", "LOCKED", "ARCHIVE_INSTANT_ACCESS");
        assert_eq!(
            kinds(&diff(&a, &b)),
            [
                ("version_changed", "1", "2"),
                ("workflow_status_changed", "IMPORTING", "IMPORT_FAILED"),
                ("state_changed", "ACTIVE", "LOCKED"),
                (
                    "storage_tier_changed",
                    "FREQUENT_ACCESS",
                    "ARCHIVE_INSTANT_ACCESS"
                ),
            ]
        );
    }

    #[test]
    fn failures_are_recognised_including_future_statuses() {
        let a = snap(1, "COPYING", "ACTIVE", "FREQUENT_ACCESS");
        let failed = diff(&a, &snap(1, "COPY_FAILED", "ACTIVE", "FREQUENT_ACCESS"));
        assert!(failed[0].is_failure());
        let future = diff(&a, &snap(1, "ARCHIVE_FAILED", "ACTIVE", "FREQUENT_ACCESS"));
        assert!(future[0].is_failure());
        let ok = diff(&a, &snap(1, "COPIED", "ACTIVE", "FREQUENT_ACCESS"));
        assert!(!ok[0].is_failure());
        let state = diff(&a, &snap(1, "COPYING", "LOCKED", "FREQUENT_ACCESS"));
        assert!(!state[0].is_failure());
    }

    #[test]
    fn missing_values_are_reported_as_unknown() {
        let a = snap(1, "IMPORTED", "ACTIVE", "FREQUENT_ACCESS");
        let mut b = a.clone();
        b.workflow_status = None;
        assert_eq!(
            kinds(&diff(&a, &b)),
            [("workflow_status_changed", "IMPORTED", "unknown")]
        );
    }

    #[test]
    fn gone_names_the_last_status() {
        let t = gone(&snap(3, "DELETING", "ACTIVE", "FREQUENT_ACCESS"));
        assert_eq!(
            (t.kind.as_str(), t.from.as_str(), t.to.as_str()),
            ("image_set_gone", "DELETING", "gone")
        );
    }
}
