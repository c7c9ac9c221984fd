//! The simulator's in-memory world: datastores, image sets with every version, and the
//! pending timeline. Time is passed in, so the logic is testable without a clock.
//!
//! Each datastore keeps its image sets with two ordered indexes, by `updatedAt` and by
//! `createdAt` (milliseconds, then id), so a SearchImageSets page is a range scan from the
//! cursor, not a sort of the whole datastore.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::time::Duration;

use serde_json::{Map, Value};

use super::scenario::{GenerateSpec, ImageSetSpec, Scenario, TimelineStep};
use super::vocab;

/// Key of an image set: (datastore id, image set id).
pub type Key = (String, String);

/// A resource id (`[0-9a-z]{32}`) as fixed bytes: index entries need no allocation.
pub type Id = [u8; 32];

/// An index entry: a timestamp in epoch milliseconds, then the image set id.
pub type IndexEntry = (i64, Id);

/// The id as bytes; ids are validated as 32 ASCII characters before they get here.
pub fn id_bytes(id: &str) -> Id {
    let mut out = [0u8; 32];
    let n = id.len().min(32);
    out[..n].copy_from_slice(&id.as_bytes()[..n]);
    out
}

/// Epoch seconds as whole milliseconds, the precision the world keeps.
pub fn to_millis(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

/// One version of an image set's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// The version number.
    pub number: u64,
    /// Workflow status (normally one of the API's values).
    pub workflow_status: Cow<'static, str>,
    /// State: ACTIVE, LOCKED or DELETED.
    pub state: Cow<'static, str>,
    /// Storage tier.
    pub storage_tier: Cow<'static, str>,
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

/// An image set's DICOM tags, as SearchImageSets returns them.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum DicomTags {
    /// No tags.
    #[default]
    None,
    /// Synthetic tags of a generated image set, computed on demand from its position.
    Generated {
        /// Generate block.
        block: u32,
        /// Index within the block.
        index: u32,
    },
    /// Tags from the scenario or the control API (validated against the model).
    Given(Box<Map<String, Value>>),
}

impl DicomTags {
    /// One tag's value, if set.
    pub fn get(&self, name: &str) -> Option<Value> {
        match self {
            DicomTags::None => None,
            DicomTags::Generated { block, index } => generated_tag(*block, *index, name),
            DicomTags::Given(map) => map.get(name).cloned(),
        }
    }

    /// True when the tag `name` is the string `value` (no allocation for generated tags'
    /// usual mismatch beyond the one computed value).
    pub fn has(&self, name: &str, value: &str) -> bool {
        match self {
            DicomTags::Given(map) => map.get(name).and_then(Value::as_str) == Some(value),
            other => other.get(name).as_ref().and_then(Value::as_str) == Some(value),
        }
    }

    /// All tags as the `DICOMTags` JSON object, or None without tags.
    pub fn to_json(&self) -> Option<Value> {
        match self {
            DicomTags::None => None,
            DicomTags::Generated { block, index } => Some(Value::Object(
                vocab::DICOM_TAGS
                    .iter()
                    .filter_map(|(name, _)| {
                        generated_tag(*block, *index, name).map(|v| (name.to_string(), v))
                    })
                    .collect(),
            )),
            DicomTags::Given(map) => Some(Value::Object((**map).clone())),
        }
    }
}

/// splitmix64: a well-mixed hash of a counter, for deterministic per-index choices.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A deterministic hash of a generated image set's position and a purpose (`salt`).
fn position_hash(block: u32, index: u32, salt: u64) -> u64 {
    mix64(((u64::from(block) << 32) | u64::from(index)) ^ mix64(salt))
}

/// A deterministic fraction in [0, 1) for a generated image set and a purpose.
fn position_unit(block: u32, index: u32, salt: u64) -> f64 {
    (position_hash(block, index, salt) >> 11) as f64 / (1u64 << 53) as f64
}

/// The synthetic, recognisable DICOM tag `name` of generated image set `index` of `block`.
pub fn generated_tag(block: u32, index: u32, name: &str) -> Option<Value> {
    let pick = |salt: u64, choices: &[&str]| {
        choices[(position_hash(block, index, salt) % choices.len() as u64) as usize].to_string()
    };
    let h = |salt: u64| position_hash(block, index, salt);
    let text = match name {
        "DICOMPatientId" => format!("GENPID{block}x{index}"),
        "DICOMPatientName" => format!("GENERATED^PATIENT^{block}-{index}"),
        "DICOMPatientBirthDate" => format!(
            "{}{:02}{:02}",
            1930 + h(10) % 80,
            1 + h(11) % 12,
            1 + h(12) % 28
        ),
        "DICOMPatientSex" => pick(13, &["F", "M", "O"]),
        "DICOMStudyInstanceUID" => format!("1.2.826.0.1.3680043.9999.{block}.{index}"),
        "DICOMStudyId" => format!("GENSTUDY{block}x{index}"),
        "DICOMStudyDescription" => format!("GENERATED STUDY {block}-{index}"),
        "DICOMNumberOfStudyRelatedSeries" => return Some(Value::from(1 + h(14) % 4)),
        "DICOMNumberOfStudyRelatedInstances" => return Some(Value::from(1 + h(15) % 400)),
        "DICOMAccessionNumber" => format!("GENACC{block}x{index}"),
        "DICOMSeriesInstanceUID" => format!("1.2.826.0.1.3680043.9999.{block}.{index}.1"),
        "DICOMSeriesModality" => pick(16, &["CT", "MR", "CR", "US", "MG", "PT", "DX"]),
        "DICOMSeriesBodyPart" => pick(17, &["CHEST", "HEAD", "ABDOMEN", "KNEE", "SPINE", "BREAST"]),
        "DICOMSeriesNumber" => return Some(Value::from(1)),
        "DICOMStudyDate" => format!("2025{:02}{:02}", 1 + h(18) % 12, 1 + h(19) % 28),
        "DICOMStudyTime" => format!("{:02}{:02}{:02}", h(20) % 24, h(21) % 60, h(22) % 60),
        _ => return None,
    };
    Some(Value::String(text))
}

/// An image set and all its versions.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Versions in ascending number order; the last is the latest. Old versions keep
    /// the properties they had when the next one was made.
    pub versions: Vec<Version>,
    /// Its DICOM tags (of the latest version).
    pub tags: DicomTags,
}

impl ImageSet {
    fn new(first: Version, tags: DicomTags) -> Self {
        ImageSet {
            versions: vec![first],
            tags,
        }
    }

    /// The latest version.
    pub fn latest(&self) -> &Version {
        // An image set is never created without a version.
        self.versions
            .last()
            .expect("image set has at least one version")
    }

    /// Version `number`, if it exists.
    pub fn version(&self, number: u64) -> Option<&Version> {
        self.versions
            .binary_search_by_key(&number, |v| v.number)
            .ok()
            .map(|i| &self.versions[i])
    }

    fn index_times(&self) -> (i64, i64) {
        let v = self.latest();
        (to_millis(v.updated_at), to_millis(v.created_at))
    }
}

/// The timestamp a listing is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    /// `updatedAt`.
    UpdatedAt,
    /// `createdAt`.
    CreatedAt,
}

/// A datastore with its image sets and their indexes.
#[derive(Debug, Clone)]
pub struct Datastore {
    /// Its name.
    pub name: String,
    /// Its status (normally one of the API's values).
    pub status: Cow<'static, str>,
    /// Creation time, epoch seconds.
    pub created_at: f64,
    /// Last update, epoch seconds.
    pub updated_at: f64,
    sets: BTreeMap<String, ImageSet>,
    by_updated: BTreeSet<IndexEntry>,
    by_created: BTreeSet<IndexEntry>,
}

impl Datastore {
    fn new(id: &str, at: f64) -> Self {
        Datastore {
            name: format!("datastore-{}", &id[..8.min(id.len())]),
            status: "ACTIVE".into(),
            created_at: at,
            updated_at: at,
            sets: BTreeMap::new(),
            by_updated: BTreeSet::new(),
            by_created: BTreeSet::new(),
        }
    }

    /// Its image sets by id.
    pub fn image_sets(&self) -> &BTreeMap<String, ImageSet> {
        &self.sets
    }

    fn index(&mut self, id: &str, times: Option<(i64, i64)>, add: bool) {
        if let Some((updated, created)) = times {
            let bytes = id_bytes(id);
            if add {
                self.by_updated.insert((updated, bytes));
                self.by_created.insert((created, bytes));
            } else {
                self.by_updated.remove(&(updated, bytes));
                self.by_created.remove(&(created, bytes));
            }
        }
    }

    fn insert(&mut self, id: String, set: ImageSet) {
        let times = set.index_times();
        if let Some(old) = self.sets.insert(id.clone(), set) {
            self.index(&id, Some(old.index_times()), false);
        }
        self.index(&id, Some(times), true);
    }

    fn take(&mut self, id: &str) -> Option<ImageSet> {
        let old = self.sets.remove(id)?;
        self.index(id, Some(old.index_times()), false);
        Some(old)
    }

    /// Image sets ordered by `field` whose timestamp (milliseconds) is within `range`
    /// (inclusive), strictly after `cursor` in the listing's direction; newest first
    /// when `descending`. Costs O(log n) plus the entries it yields.
    pub fn scan<'a>(
        &'a self,
        field: SortField,
        descending: bool,
        range: (i64, i64),
        cursor: Option<IndexEntry>,
    ) -> Box<dyn Iterator<Item = (&'a str, &'a ImageSet)> + 'a> {
        let index = match field {
            SortField::UpdatedAt => &self.by_updated,
            SortField::CreatedAt => &self.by_created,
        };
        let lo: IndexEntry = (range.0, [0; 32]);
        let hi: IndexEntry = (range.1, [0xff; 32]);
        let bounds = match cursor {
            _ if lo > hi => None,
            None => Some((Bound::Included(lo), Bound::Included(hi))),
            Some(c) if !descending => {
                if c >= hi {
                    None
                } else if c < lo {
                    Some((Bound::Included(lo), Bound::Included(hi)))
                } else {
                    Some((Bound::Excluded(c), Bound::Included(hi)))
                }
            }
            Some(c) => {
                if c <= lo {
                    None
                } else if c > hi {
                    Some((Bound::Included(lo), Bound::Included(hi)))
                } else {
                    Some((Bound::Included(lo), Bound::Excluded(c)))
                }
            }
        };
        let Some(bounds) = bounds else {
            return Box::new(std::iter::empty());
        };
        let entries = index.range(bounds);
        let lookup = move |(_, id): &IndexEntry| {
            let id = std::str::from_utf8(id).ok()?;
            self.sets.get_key_value(id).map(|(k, v)| (k.as_str(), v))
        };
        if descending {
            Box::new(entries.rev().filter_map(lookup))
        } else {
            Box::new(entries.filter_map(lookup))
        }
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
    /// New DICOM tags (replacing all of them); `Some(None)` removes them.
    pub dicom_tags: Option<Option<Map<String, Value>>>,
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
    datastores: BTreeMap<String, Datastore>,
    pending: VecDeque<Pending>,
    start_epoch: f64,
}

/// Rounds epoch seconds to milliseconds, the precision the service reports.
fn millis(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// A value drawn from `weights` by `roll` (weights add up to more than 0).
fn weighted(weights: &[(Cow<'static, str>, u64)], roll: u64) -> Cow<'static, str> {
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    let mut at = roll % total.max(1);
    for (value, weight) in weights {
        if at < *weight {
            return value.clone();
        }
        at -= weight;
    }
    weights.last().map_or(Cow::Borrowed(""), |(v, _)| v.clone())
}

/// The weights of a generate block's value: its mix, else its single value, else `default`.
fn weights_of(
    mix: Option<&BTreeMap<String, u32>>,
    single: Option<&str>,
    default: &'static str,
) -> Vec<(Cow<'static, str>, u64)> {
    match mix {
        Some(mix) => mix
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(v, w)| (vocab::intern(v), u64::from(*w)))
            .collect(),
        None => vec![(vocab::intern(single.unwrap_or(default)), 1)],
    }
}

/// Default age of a datastore at start: it predates every image set of the scenario.
const DATASTORE_AGE: f64 = 30.0 * 86_400.0;

impl World {
    /// Builds the world of `scenario` as it stands at `start_epoch` (epoch seconds).
    pub fn new(scenario: &Scenario, start_epoch: f64) -> Self {
        let start_epoch = millis(start_epoch);
        let mut world = World {
            region: scenario.region.clone(),
            account_id: scenario.account_id.clone(),
            datastores: BTreeMap::new(),
            pending: VecDeque::new(),
            start_epoch,
        };
        for spec in &scenario.datastores {
            let ds = world.ensure_datastore(&spec.id.0, start_epoch);
            if let Some(name) = &spec.name {
                ds.name = name.clone();
            }
            if let Some(status) = &spec.status {
                ds.status = vocab::intern(&status.0);
            }
        }
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
            world.generate(b, block);
        }
        // A datastore is older than anything in it.
        for ds in world.datastores.values_mut() {
            let oldest = ds
                .by_created
                .first()
                .map_or(f64::INFINITY, |(ms, _)| *ms as f64 / 1000.0);
            ds.created_at = millis((start_epoch - DATASTORE_AGE).min(oldest));
            ds.updated_at = ds.created_at;
        }
        // Stable sort keeps each image set's steps in file order at equal offsets.
        pending.sort_by_key(|p| p.after);
        world.pending = pending.into();
        world
    }

    fn generate(&mut self, b: usize, block: &GenerateSpec) {
        let start = self.start_epoch;
        let statuses = weights_of(
            block.workflow_status_mix.as_ref(),
            block.workflow_status.as_ref().map(|s| s.0.as_str()),
            "IMPORTED",
        );
        let tiers = weights_of(
            block.storage_tier_mix.as_ref(),
            block.storage_tier.as_ref().map(|s| s.0.as_str()),
            "FREQUENT_ACCESS",
        );
        let state = vocab::intern(block.state.as_ref().map_or("ACTIVE", |s| &s.0));
        let block_no = u32::try_from(b).unwrap_or(u32::MAX);
        let ds = self.ensure_datastore(&block.datastore_id.0, start);
        for i in 0..block.count {
            let workflow_status = weighted(&statuses, position_hash(block_no, i, 1));
            let (created_at, updated_at) = match block.updated_spread {
                Some(spread) => {
                    let updated =
                        millis(start - spread.as_secs_f64() * position_unit(block_no, i, 3));
                    (
                        millis(updated - 86_400.0 * position_unit(block_no, i, 4)),
                        updated,
                    )
                }
                None => (millis(start - 86_400.0), millis(start - 86_400.0)),
            };
            let message = workflow_status.ends_with("_FAILED").then(|| {
                format!("Simulated failure of generated image set {i} ({workflow_status})")
            });
            let version = Version {
                number: 1,
                workflow_status,
                state: state.clone(),
                storage_tier: weighted(&tiers, position_hash(block_no, i, 2)),
                is_primary: true,
                forced: None,
                message,
                created_at,
                updated_at,
                deleted_at: (state == "DELETED").then_some(updated_at),
                last_accessed_at: None,
            };
            ds.insert(
                GenerateSpec::image_set_id(b, i),
                ImageSet::new(
                    version,
                    DicomTags::Generated {
                        block: block_no,
                        index: i,
                    },
                ),
            );
        }
    }

    fn insert_initial(&mut self, key: &Key, spec: &ImageSetSpec) {
        let secs = |d: Duration| millis(self.start_epoch - d.as_secs_f64());
        let created_at = secs(spec.created_ago.unwrap_or(Duration::from_secs(86_400)));
        let updated_at = spec.updated_ago.map_or(created_at, secs);
        let state = vocab::intern(spec.state.as_ref().map_or("ACTIVE", |s| &s.0));
        let version = Version {
            number: spec.version_id.as_ref().map_or(1, |v| v.number()),
            workflow_status: vocab::intern(
                spec.workflow_status.as_ref().map_or("IMPORTED", |s| &s.0),
            ),
            deleted_at: (state == "DELETED").then_some(updated_at),
            state,
            storage_tier: vocab::intern(
                spec.storage_tier
                    .as_ref()
                    .map_or("FREQUENT_ACCESS", |s| &s.0),
            ),
            is_primary: spec.is_primary.unwrap_or(true),
            forced: spec.forced,
            message: spec.message.clone().filter(|m| !m.is_empty()),
            created_at,
            updated_at,
            last_accessed_at: spec.last_accessed_ago.map(secs),
        };
        let tags = match &spec.dicom_tags {
            Some(tags) => DicomTags::Given(Box::new(
                tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            )),
            None => DicomTags::None,
        };
        let start = self.start_epoch;
        self.ensure_datastore(&key.0, start)
            .insert(key.1.clone(), ImageSet::new(version, tags));
    }

    fn ensure_datastore(&mut self, id: &str, at: f64) -> &mut Datastore {
        self.datastores
            .entry(id.to_string())
            .or_insert_with(|| Datastore::new(id, millis(at)))
    }

    /// Every datastore by id.
    pub fn datastores(&self) -> &BTreeMap<String, Datastore> {
        &self.datastores
    }

    /// One image set, if it exists.
    pub fn image_set(&self, datastore_id: &str, image_set_id: &str) -> Option<&ImageSet> {
        self.datastores.get(datastore_id)?.sets.get(image_set_id)
    }

    /// Every image set with its datastore id, in (datastore, image set) order.
    pub fn image_sets(&self) -> impl Iterator<Item = (&str, &str, &ImageSet)> {
        self.datastores.iter().flat_map(|(d, ds)| {
            ds.sets
                .iter()
                .map(move |(i, set)| (d.as_str(), i.as_str(), set))
        })
    }

    /// Upserts a datastore's name and status at epoch time `at`.
    pub fn put_datastore(
        &mut self,
        id: &str,
        name: Option<String>,
        status: Option<String>,
        at: f64,
    ) -> &Datastore {
        let ds = self.ensure_datastore(id, at);
        let mut changed = false;
        if let Some(name) = name.filter(|n| *n != ds.name) {
            ds.name = name;
            changed = true;
        }
        if let Some(status) = status.filter(|s| *s != ds.status) {
            ds.status = vocab::intern(&status);
            changed = true;
        }
        if changed {
            ds.updated_at = millis(at.max(ds.updated_at + 0.001));
        }
        ds
    }

    /// Applies every timeline step due at `elapsed` after start. All steps due by then
    /// are applied in one call, under one lock: a request never sees part of them.
    pub fn advance(&mut self, elapsed: Duration) {
        while self.pending.front().is_some_and(|p| p.after <= elapsed) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let at = millis(self.start_epoch + p.after.as_secs_f64());
            if p.step.delete {
                self.remove(&p.key);
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
                dicom_tags: None,
            };
            // A deleted image set's later steps recreate it, as a control-API PUT would.
            if let Err(error) = self.apply(&p.key, &patch, at) {
                tracing::warn!(%error, image_set_id = %p.key.1, "timeline step skipped");
            }
        }
    }

    /// Upserts an image set with `patch` at epoch time `at`; returns the resulting latest
    /// version. Any change moves `updatedAt` forward, by at least a millisecond.
    pub fn apply(&mut self, key: &Key, patch: &Patch, at: f64) -> Result<Version, PatchError> {
        let at = millis(at);
        let ds = self.ensure_datastore(&key.0, at);
        let Some(set) = ds.sets.get(&key.1) else {
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
            ds.insert(key.1.clone(), ImageSet::new(fresh, DicomTags::None));
            // The fresh version is the base the patch applies to.
            let set = &ds.sets[&key.1];
            let base = set.latest().clone();
            return Self::patch_set(ds, key, base, patch, at, true);
        };
        let base = set.latest().clone();
        Self::patch_set(ds, key, base, patch, at, false)
    }

    fn patch_set(
        ds: &mut Datastore,
        key: &Key,
        latest: Version,
        patch: &Patch,
        at: f64,
        fresh: bool,
    ) -> Result<Version, PatchError> {
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
            next.workflow_status = vocab::intern(s);
        }
        if let Some(s) = &patch.state {
            next.state = vocab::intern(s);
            next.deleted_at = if s == "DELETED" {
                latest.deleted_at.or(Some(at))
            } else {
                None
            };
        }
        if let Some(t) = &patch.storage_tier {
            next.storage_tier = vocab::intern(t);
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
        // Take the set out to change it, and put it back so the indexes follow.
        let Some(mut set) = ds.take(&key.1) else {
            return Ok(latest);
        };
        let mut tags_changed = false;
        if let Some(tags) = &patch.dicom_tags {
            let tags = match tags {
                Some(map) => DicomTags::Given(Box::new(map.clone())),
                None => DicomTags::None,
            };
            if tags != set.tags {
                set.tags = tags;
                tags_changed = true;
            }
        }
        if (next != latest || tags_changed) && !fresh {
            next.updated_at = millis(at.max(latest.updated_at + 0.001));
        }
        match set.versions.last_mut() {
            Some(last) if last.number == next.number => *last = next.clone(),
            _ => set.versions.push(next.clone()),
        }
        ds.insert(key.1.clone(), set);
        Ok(next)
    }

    /// Removes an image set; false when it did not exist.
    pub fn remove(&mut self, key: &Key) -> bool {
        self.datastores
            .get_mut(&key.0)
            .is_some_and(|ds| ds.take(&key.1).is_some())
    }

    /// The ARN of an image set in this world's region and account.
    pub fn image_set_arn(&self, datastore_id: &str, image_set_id: &str) -> String {
        format!(
            "arn:aws:medical-imaging:{}:{}:datastore/{}/imageset/{}",
            self.region, self.account_id, datastore_id, image_set_id
        )
    }

    /// The ARN of a datastore in this world's region and account.
    pub fn datastore_arn(&self, datastore_id: &str) -> String {
        format!(
            "arn:aws:medical-imaging:{}:{}:datastore/{}",
            self.region, self.account_id, datastore_id
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

    fn set(w: &World) -> &ImageSet {
        w.image_set(DS, IS).expect("the image set exists")
    }

    #[test]
    fn timeline_steps_apply_at_their_offset_with_that_updated_at() {
        let mut w = world(
            "[[image_sets.timeline]]\nafter = \"10s\"\nworkflow_status = \"IMPORT_FAILED\"\nmessage = \"bad dicom\"\n",
        );
        w.advance(Duration::from_secs(9));
        assert_eq!(set(&w).latest().workflow_status, "IMPORTING");
        w.advance(Duration::from_secs(30));
        let v = set(&w).latest();
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
        let set = set(&w);
        assert_eq!(set.versions.len(), 2);
        assert_eq!(set.version(1).unwrap().workflow_status, "IMPORTING");
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
        assert_eq!(set(&w).versions.len(), 1);
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
        assert!(w.image_set(DS, IS).is_none());
    }

    #[test]
    fn steps_with_the_same_offset_apply_together_and_keep_every_version() {
        let mut w = world(
            "[[image_sets.timeline]]\nafter = \"10s\"\nversion_id = \"2\"\nworkflow_status = \"UPDATING\"\n\
             [[image_sets.timeline]]\nafter = \"10s\"\nversion_id = \"3\"\nworkflow_status = \"UPDATED\"\n",
        );
        w.advance(Duration::from_millis(9_999));
        assert_eq!(set(&w).versions.len(), 1);
        w.advance(Duration::from_secs(10));
        let s = set(&w);
        let numbers: Vec<u64> = s.versions.iter().map(|v| v.number).collect();
        assert_eq!(numbers, [1, 2, 3], "both steps are visible at once");
        assert_eq!(s.version(1).unwrap().workflow_status, "IMPORTING");
        assert_eq!(s.version(2).unwrap().workflow_status, "UPDATING");
        assert_eq!(s.latest().workflow_status, "UPDATED");
        let times: Vec<f64> = s.versions.iter().map(|v| v.updated_at).collect();
        assert!(
            times.windows(2).all(|p| p[0] < p[1]),
            "updatedAt moves forward on every change: {times:?}"
        );
    }

    #[test]
    fn every_change_moves_updated_at_and_no_change_keeps_it() {
        let mut w = world("");
        let at = 1_700_000_100.0;
        let mut last = set(&w).latest().updated_at;
        for patch in [
            Patch {
                workflow_status: Some("IMPORTED".into()),
                ..Patch::default()
            },
            Patch {
                is_primary: Some(false),
                ..Patch::default()
            },
            Patch {
                dicom_tags: Some(Some(serde_json::Map::from_iter([(
                    "DICOMPatientId".to_string(),
                    serde_json::json!("P1"),
                )]))),
                ..Patch::default()
            },
        ] {
            let v = w.apply(&key(), &patch, at).unwrap();
            assert!(v.updated_at > last, "{patch:?}");
            last = v.updated_at;
        }
        let v = w
            .apply(
                &key(),
                &Patch {
                    is_primary: Some(false),
                    ..Patch::default()
                },
                at + 50.0,
            )
            .unwrap();
        assert_eq!(v.updated_at, last, "a patch changing nothing is no update");
    }

    fn generated(extra: &str) -> World {
        let text = format!("[[generate]]\ndatastore_id = \"{DS}\"\ncount = 10000\n{extra}\n");
        World::new(&Scenario::parse(&text, "").unwrap(), 1_700_000_000.0)
    }

    #[test]
    fn generated_mixes_are_deterministic_and_roughly_weighted() {
        let mix = "workflow_status_mix = { IMPORTED = 97, IMPORT_FAILED = 1, IMPORTING = 2 }\n\
                   storage_tier_mix = { FREQUENT_ACCESS = 3, ARCHIVE_INSTANT_ACCESS = 1 }\n\
                   updated_spread = \"30d\"";
        let (a, b) = (generated(mix), generated(mix));
        let count = |w: &World, f: &dyn Fn(&Version) -> bool| {
            w.image_sets().filter(|(_, _, s)| f(s.latest())).count()
        };
        let failed = count(&a, &|v| v.workflow_status == "IMPORT_FAILED");
        let importing = count(&a, &|v| v.workflow_status == "IMPORTING");
        let archived = count(&a, &|v| v.storage_tier == "ARCHIVE_INSTANT_ACCESS");
        assert!((60..=140).contains(&failed), "{failed}");
        assert!((140..=260).contains(&importing), "{importing}");
        assert!((2_200..=2_800).contains(&archived), "{archived}");
        for ((_, _, x), (_, _, y)) in a.image_sets().zip(b.image_sets()) {
            assert_eq!(x.latest(), y.latest());
        }
        let start = 1_700_000_000.0;
        let (mut oldest, mut newest) = (f64::MAX, f64::MIN);
        for (_, _, s) in a.image_sets() {
            let v = s.latest();
            assert!(v.created_at <= v.updated_at);
            oldest = oldest.min(v.updated_at);
            newest = newest.max(v.updated_at);
            assert_eq!(
                v.message.is_some(),
                v.workflow_status == "IMPORT_FAILED",
                "failed sets carry a message"
            );
        }
        assert!(oldest >= start - 30.0 * 86_400.0 && newest <= start);
        assert!(newest - oldest > 25.0 * 86_400.0, "spread over the span");
        let first_created = a
            .image_sets()
            .map(|(_, _, s)| s.latest().created_at)
            .fold(f64::MAX, f64::min);
        assert!(
            a.datastores()[DS].created_at <= first_created,
            "the datastore is older"
        );
    }

    #[test]
    fn generated_tags_are_recognisable_and_not_stored() {
        let w = generated("");
        let s = w.image_set(DS, "00000000000000000000000000000007").unwrap();
        assert_eq!(s.tags, DicomTags::Generated { block: 0, index: 7 });
        let tags = s.tags.to_json().unwrap();
        assert_eq!(tags["DICOMPatientName"], "GENERATED^PATIENT^0-7");
        assert_eq!(tags["DICOMPatientId"], "GENPID0x7");
        for (name, value) in tags.as_object().unwrap() {
            vocab::check_dicom_tag(name, value).unwrap();
        }
        assert!(s.tags.has("DICOMAccessionNumber", "GENACC0x7"));
        assert!(!s.tags.has("DICOMAccessionNumber", "GENACC0x8"));
    }

    #[test]
    fn scans_page_through_ties_without_skipping_or_repeating() {
        // 10,000 generated sets share one updatedAt: the id breaks the ties.
        let w = generated("");
        let ds = &w.datastores()[DS];
        for descending in [false, true] {
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page: Vec<(i64, Id)> = ds
                    .scan(
                        SortField::UpdatedAt,
                        descending,
                        (i64::MIN, i64::MAX),
                        cursor,
                    )
                    .take(37)
                    .map(|(id, s)| (to_millis(s.latest().updated_at), id_bytes(id)))
                    .collect();
                let Some(last) = page.last().copied() else {
                    break;
                };
                seen.extend(page);
                cursor = Some(last);
            }
            assert_eq!(seen.len(), 10_000);
            let mut sorted = seen.clone();
            sorted.sort();
            if descending {
                sorted.reverse();
            }
            assert_eq!(seen, sorted);
            sorted.dedup();
            assert_eq!(sorted.len(), 10_000);
        }
    }

    #[test]
    fn scans_respect_ranges_and_the_index_follows_changes() {
        let mut w = world("");
        let ms = to_millis(set(&w).latest().updated_at);
        let hits = |w: &World, lo: i64, hi: i64| {
            w.datastores()[DS]
                .scan(SortField::UpdatedAt, true, (lo, hi), None)
                .count()
        };
        assert_eq!(hits(&w, ms, ms), 1);
        assert_eq!(hits(&w, ms + 1, i64::MAX), 0);
        assert_eq!(hits(&w, ms + 1, ms), 0);
        let patch = Patch {
            workflow_status: Some("IMPORTED".into()),
            ..Patch::default()
        };
        let v = w.apply(&key(), &patch, 1_700_000_500.0).unwrap();
        assert_eq!(hits(&w, ms, ms), 0);
        let now = to_millis(v.updated_at);
        assert_eq!(hits(&w, now, now), 1);
        assert!(w.remove(&key()));
        assert_eq!(hits(&w, i64::MIN, i64::MAX), 0);
    }

    #[test]
    fn datastores_keep_scenario_names_and_statuses_and_implicit_ones_exist() {
        let text = format!(
            "[[datastores]]\nid = \"{DS}\"\nname = \"radiology\"\nstatus = \"CREATING\"\n\
             [[datastores]]\nid = \"{IS}\"\n"
        );
        let mut w = World::new(&Scenario::parse(&text, "").unwrap(), 1_700_000_000.0);
        assert_eq!(w.datastores()[DS].name, "radiology");
        assert_eq!(w.datastores()[DS].status, "CREATING");
        assert_eq!(w.datastores()[IS].name, "datastore-fedcba98");
        assert_eq!(w.datastores()[IS].status, "ACTIVE");
        let before = w.datastores()[DS].updated_at;
        let ds = w.put_datastore(DS, None, Some("ACTIVE".into()), 1_700_000_000.0);
        assert_eq!(ds.status, "ACTIVE");
        assert!(ds.updated_at > before);
        w.apply(
            &(("a".repeat(32)), IS.into()),
            &Patch::default(),
            1_700_000_001.0,
        )
        .unwrap();
        assert_eq!(w.datastores()[&"a".repeat(32)].status, "ACTIVE");
    }
}
