//! The simulator's in-memory world: datastores, image sets with every version, and the
//! pending timeline. Time is passed in, so the logic is testable without a clock.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::scenario::{ImageSetSpec, Scenario, TimelineStep};

/// Key of an image set: (datastore id, image set id).
pub type Key = (String, String);

/// One version of an image set's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// The version number.
    pub number: u64,
    /// Workflow status (normally one of the API's values).
    pub workflow_status: String,
    /// State: ACTIVE, LOCKED or DELETED.
    pub state: String,
    /// Storage tier.
    pub storage_tier: String,
    /// Primary flag.
    pub is_primary: bool,
    /// `overrides.forced`, when set.
    pub forced: Option<bool>,
    /// Failure message, when set.
    pub message: Option<String>,
    /// Creation time, epoch seconds.
    pub created_at: f64,
    /// Last update, epoch seconds.
    pub updated_at: f64,
    /// Deletion time, epoch seconds.
    pub deleted_at: Option<f64>,
    /// Last access, epoch seconds.
    pub last_accessed_at: Option<f64>,
}

/// An image set and all its versions.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Versions by number; the last is the latest.
    pub versions: BTreeMap<u64, Version>,
}

impl ImageSet {
    /// The latest version.
    pub fn latest(&self) -> &Version {
        // An image set is never created without a version.
        self.versions
            .values()
            .next_back()
            .expect("image set has at least one version")
    }
}

/// A change to an image set, from a timeline step or the control API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    /// New workflow status.
    pub workflow_status: Option<String>,
    /// New state.
    pub state: Option<String>,
    /// New storage tier.
    pub storage_tier: Option<String>,
    /// New version number (must exceed the latest).
    pub version: Option<u64>,
    /// `Some(None)` clears the message.
    pub message: Option<Option<String>>,
    /// `Some(None)` clears `overrides`.
    pub forced: Option<Option<bool>>,
    /// New primary flag.
    pub is_primary: Option<bool>,
    /// New last-access time.
    pub last_accessed_at: Option<Option<f64>>,
}

/// Why a patch was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// The requested version is not newer than the latest.
    #[error("versionId: `{requested}` must be greater than the latest version {latest}")]
    VersionNotNewer {
        /// Asked for.
        requested: u64,
        /// Current latest.
        latest: u64,
    },
}

/// A timeline step waiting for its time.
#[derive(Debug, Clone)]
struct Pending {
    after: Duration,
    key: Key,
    step: TimelineStep,
}

/// Everything the simulator serves.
#[derive(Debug)]
pub struct World {
    /// Region used in ARNs.
    pub region: String,
    /// Account used in ARNs.
    pub account_id: String,
    /// Datastores by id, with their names.
    pub datastores: BTreeMap<String, String>,
    /// Image sets by key.
    pub image_sets: BTreeMap<Key, ImageSet>,
    pending: VecDeque<Pending>,
    start_epoch: f64,
}

/// Rounds epoch seconds to milliseconds, the precision the service reports.
fn millis(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

impl World {
    /// Builds the world of `scenario` as it stands at `start_epoch` (epoch seconds).
    pub fn new(scenario: &Scenario, start_epoch: f64) -> Self {
        let start_epoch = millis(start_epoch);
        let mut world = World {
            region: scenario.region.clone(),
            account_id: scenario.account_id.clone(),
            datastores: scenario
                .datastores
                .iter()
                .map(|d| {
                    let name = d
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("datastore-{}", &d.id.0[..8]));
                    (d.id.0.clone(), name)
                })
                .collect(),
            image_sets: BTreeMap::new(),
            pending: VecDeque::new(),
            start_epoch,
        };
        let mut pending = Vec::new();
        for spec in &scenario.image_sets {
            let key = (spec.datastore_id.0.clone(), spec.image_set_id.0.clone());
            world.insert_initial(&key, spec);
            pending.extend(spec.timeline.iter().map(|step| Pending {
                after: step.after,
                key: key.clone(),
                step: step.clone(),
            }));
        }
        for (b, block) in scenario.generate.iter().enumerate() {
            world.ensure_datastore(&block.datastore_id.0);
            let created_at = millis(start_epoch - 86_400.0);
            let template = Version {
                number: 1,
                workflow_status: block
                    .workflow_status
                    .as_ref()
                    .map_or("IMPORTED", |s| &s.0)
                    .to_string(),
                state: block.state.as_ref().map_or("ACTIVE", |s| &s.0).to_string(),
                storage_tier: block
                    .storage_tier
                    .as_ref()
                    .map_or("FREQUENT_ACCESS", |s| &s.0)
                    .to_string(),
                is_primary: true,
                forced: None,
                message: None,
                created_at,
                updated_at: created_at,
                deleted_at: None,
                last_accessed_at: None,
            };
            for i in 0..block.count {
                let key = (
                    block.datastore_id.0.clone(),
                    super::scenario::GenerateSpec::image_set_id(b, i),
                );
                world.image_sets.insert(
                    key,
                    ImageSet {
                        versions: BTreeMap::from([(1, template.clone())]),
                    },
                );
            }
        }
        // Stable sort keeps each image set's steps in file order at equal offsets.
        pending.sort_by_key(|p| p.after);
        world.pending = pending.into();
        world
    }

    fn insert_initial(&mut self, key: &Key, spec: &ImageSetSpec) {
        let secs = |d: Duration| millis(self.start_epoch - d.as_secs_f64());
        let created_at = secs(spec.created_ago.unwrap_or(Duration::from_secs(86_400)));
        let updated_at = spec.updated_ago.map_or(created_at, secs);
        let state = spec.state.as_ref().map_or("ACTIVE", |s| &s.0).to_string();
        let version = Version {
            number: spec.version_id.as_ref().map_or(1, |v| v.number()),
            workflow_status: spec
                .workflow_status
                .as_ref()
                .map_or("IMPORTED", |s| &s.0)
                .to_string(),
            deleted_at: (state == "DELETED").then_some(updated_at),
            state,
            storage_tier: spec
                .storage_tier
                .as_ref()
                .map_or("FREQUENT_ACCESS", |s| &s.0)
                .to_string(),
            is_primary: spec.is_primary.unwrap_or(true),
            forced: spec.forced,
            message: spec.message.clone().filter(|m| !m.is_empty()),
            created_at,
            updated_at,
            last_accessed_at: spec.last_accessed_ago.map(secs),
        };
        self.ensure_datastore(&key.0);
        self.image_sets.insert(
            key.clone(),
            ImageSet {
                versions: BTreeMap::from([(version.number, version)]),
            },
        );
    }

    fn ensure_datastore(&mut self, id: &str) {
        if !self.datastores.contains_key(id) {
            self.datastores.insert(
                id.to_string(),
                format!("datastore-{}", &id[..8.min(id.len())]),
            );
        }
    }

    /// Applies every timeline step due at `elapsed` after start.
    pub fn advance(&mut self, elapsed: Duration) {
        while self.pending.front().is_some_and(|p| p.after <= elapsed) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let at = millis(self.start_epoch + p.after.as_secs_f64());
            if p.step.delete {
                self.image_sets.remove(&p.key);
                continue;
            }
            let patch = Patch {
                workflow_status: p.step.workflow_status.map(|s| s.0),
                state: p.step.state.map(|s| s.0),
                storage_tier: p.step.storage_tier.map(|s| s.0),
                version: p.step.version_id.map(|v| v.number()),
                message: p.step.message.map(|m| Some(m).filter(|m| !m.is_empty())),
                forced: p.step.forced.map(Some),
                is_primary: p.step.is_primary,
                last_accessed_at: None,
            };
            // A deleted image set's later steps recreate it, as a control-API PUT would.
            if let Err(error) = self.apply(&p.key, &patch, at) {
                tracing::warn!(%error, image_set_id = %p.key.1, "timeline step skipped");
            }
        }
    }

    /// Upserts an image set with `patch` at epoch time `at`; returns the resulting latest version.
    pub fn apply(&mut self, key: &Key, patch: &Patch, at: f64) -> Result<Version, PatchError> {
        let at = millis(at);
        self.ensure_datastore(&key.0);
        let set = match self.image_sets.get_mut(key) {
            Some(set) => set,
            None => {
                let fresh = Version {
                    number: patch.version.unwrap_or(1),
                    workflow_status: "CREATED".into(),
                    state: "ACTIVE".into(),
                    storage_tier: "FREQUENT_ACCESS".into(),
                    is_primary: true,
                    forced: None,
                    message: None,
                    created_at: at,
                    updated_at: at,
                    deleted_at: None,
                    last_accessed_at: None,
                };
                self.image_sets.entry(key.clone()).or_insert(ImageSet {
                    versions: BTreeMap::from([(fresh.number, fresh)]),
                })
            }
        };
        let latest = set.latest().clone();
        let mut next = latest.clone();
        if let Some(v) = patch.version {
            if v != latest.number {
                if v < latest.number {
                    return Err(PatchError::VersionNotNewer {
                        requested: v,
                        latest: latest.number,
                    });
                }
                next.number = v;
                // A new version starts without the previous one's failure message.
                next.message = None;
            }
        }
        if let Some(s) = &patch.workflow_status {
            next.workflow_status = s.clone();
        }
        if let Some(s) = &patch.state {
            next.state = s.clone();
            next.deleted_at = if s == "DELETED" {
                latest.deleted_at.or(Some(at))
            } else {
                None
            };
        }
        if let Some(t) = &patch.storage_tier {
            next.storage_tier = t.clone();
        }
        if let Some(m) = &patch.message {
            next.message = m.clone();
        }
        if let Some(f) = patch.forced {
            next.forced = f;
        }
        if let Some(p) = patch.is_primary {
            next.is_primary = p;
        }
        if let Some(t) = patch.last_accessed_at {
            next.last_accessed_at = t.map(millis);
        }
        if next != latest || patch.version.is_some() {
            next.updated_at = at.max(latest.updated_at);
        }
        set.versions.insert(next.number, next.clone());
        Ok(next)
    }

    /// Removes an image set; false when it did not exist.
    pub fn remove(&mut self, key: &Key) -> bool {
        self.image_sets.remove(key).is_some()
    }

    /// The ARN of an image set in this world's region and account.
    pub fn image_set_arn(&self, key: &Key) -> String {
        format!(
            "arn:aws:medical-imaging:{}:{}:datastore/{}/imageset/{}",
            self.region, self.account_id, key.0, key.1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DS: &str = "0123456789abcdef0123456789abcdef";
    const IS: &str = "fedcba9876543210fedcba9876543210";

    fn world(extra: &str) -> World {
        let text = format!(
            "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{IS}\"\nworkflow_status = \"IMPORTING\"\n{extra}"
        );
        World::new(&Scenario::parse(&text, "").unwrap(), 1_700_000_000.0)
    }

    fn key() -> Key {
        (DS.into(), IS.into())
    }

    #[test]
    fn timeline_steps_apply_at_their_offset_with_that_updated_at() {
        let mut w = world(
            "[[image_sets.timeline]]\nafter = \"10s\"\nworkflow_status = \"IMPORT_FAILED\"\nmessage = \"bad dicom\"\n",
        );
        w.advance(Duration::from_secs(9));
        assert_eq!(w.image_sets[&key()].latest().workflow_status, "IMPORTING");
        w.advance(Duration::from_secs(30));
        let v = w.image_sets[&key()].latest();
        assert_eq!(v.workflow_status, "IMPORT_FAILED");
        assert_eq!(v.message.as_deref(), Some("bad dicom"));
        assert_eq!(v.updated_at, 1_700_000_010.0);
    }

    #[test]
    fn new_version_keeps_the_old_one() {
        let mut w = world("");
        let patch = Patch {
            version: Some(2),
            workflow_status: Some("UPDATED".into()),
            ..Patch::default()
        };
        w.apply(&key(), &patch, 1_700_000_100.0).unwrap();
        let set = &w.image_sets[&key()];
        assert_eq!(set.versions.len(), 2);
        assert_eq!(set.versions[&1].workflow_status, "IMPORTING");
        assert_eq!(set.latest().number, 2);
    }

    #[test]
    fn older_version_is_refused_and_changes_nothing() {
        let mut w = world("version_id = \"5\"\n");
        let patch = Patch {
            version: Some(4),
            ..Patch::default()
        };
        let err = w.apply(&key(), &patch, 1.0).unwrap_err();
        assert_eq!(
            err,
            PatchError::VersionNotNewer {
                requested: 4,
                latest: 5
            }
        );
        assert_eq!(w.image_sets[&key()].versions.len(), 1);
    }

    #[test]
    fn deleted_state_sets_deleted_at() {
        let mut w = world("");
        let patch = Patch {
            state: Some("DELETED".into()),
            ..Patch::default()
        };
        let v = w.apply(&key(), &patch, 1_700_000_500.0).unwrap();
        assert_eq!(v.deleted_at, Some(1_700_000_500.0));
    }

    #[test]
    fn delete_step_removes_the_image_set() {
        let mut w = world("[[image_sets.timeline]]\nafter = \"1s\"\ndelete = true\n");
        w.advance(Duration::from_secs(1));
        assert!(w.image_sets.is_empty());
    }
}
