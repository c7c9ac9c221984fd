//! Renders the store as Prometheus text exposition at scrape time (pure: state in, text out).
//!
//! Written directly rather than through the prometheus crate's metric model: at 10k image
//! sets that model allocated ~110k metric objects and sorted them on every scrape (118 ms
//! measured, against 2.7 ms at 1k). Here one pass over the store, already in a stable
//! order, fills one buffer per family.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::{MetricsConfig, ShardingConfig};
use crate::ids::{DatastoreId, ImageSetKey};
use crate::model::ImageSetState;
use crate::store::{Entry, Origin, State, TransitionKey};
use crate::transitions::ABSENT;

/// Name, help, type and labels of every family this module renders, in output order.
pub const FAMILIES: &[(&str, &str, &str, &[&str])] = &[
    ("healthimaging_image_set_info", "Identity of a watched image set: constant 1 labelled with its version, ARN and primary flag.", "gauge", &["datastore_id", "image_set_id", "version_id", "image_set_arn", "is_primary"]),
    ("healthimaging_image_set_workflow_status", "Current workflow status of the image set: 1 on the series of the status it is in.", "gauge", &["datastore_id", "image_set_id", "status"]),
    ("healthimaging_image_set_state", "Current state of the image set: 1 on the series of the state it is in.", "gauge", &["datastore_id", "image_set_id", "state"]),
    ("healthimaging_image_set_storage_tier", "Current storage tier of the image set: 1 on the series of the tier it is in.", "gauge", &["datastore_id", "image_set_id", "tier"]),
    ("healthimaging_image_set_version", "Numeric version id of the image set's watched version.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_forced", "Whether the image set version was copied or updated with the force flag (overrides.forced): 1 yes, 0 no.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_status_changed_timestamp_seconds", "When the current workflow status was first observed by the exporter (the image set's updatedAt on first sight), in Unix seconds.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_created_timestamp_seconds", "When the image set was created according to the API, in Unix seconds.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_updated_timestamp_seconds", "When the image set's properties were last updated according to the API, in Unix seconds.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_deleted_timestamp_seconds", "When the image set was deleted according to the API, in Unix seconds.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_last_accessed_timestamp_seconds", "When the image set was last accessed according to the API, in Unix seconds.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_up", "Whether the last GetImageSet poll of the image set succeeded: 1 yes, 0 no.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_last_success_timestamp_seconds", "When a GetImageSet poll of the image set last succeeded, in Unix seconds.", "gauge", &["datastore_id", "image_set_id"]),
    ("healthimaging_image_sets", "Number of watched image sets by datastore, workflow status, state and storage tier (unknown until first read).", "gauge", &["datastore_id", "workflow_status", "state", "storage_tier"]),
    ("healthimaging_workflow_transitions_total", "Workflow status transitions observed by the exporter, by datastore and from/to status.", "counter", &["datastore_id", "from", "to"]),
    ("healthimaging_storage_tier_transitions_total", "Storage tier transitions observed by the exporter, by datastore and from/to tier.", "counter", &["datastore_id", "from", "to"]),
    ("healthimaging_targets", "Number of image sets the exporter watches.", "gauge", &[]),
    ("healthimaging_image_set_detail_omitted", "Discovered image sets that qualified for per-image-set series but were left out by metrics.max_detailed_image_sets (the aggregates still count them).", "gauge", &[]),
    ("healthimaging_datastore_info", "A datastore the exporter discovers image sets in: constant 1 labelled with its name.", "gauge", &["datastore_id", "datastore_name"]),
    ("healthimaging_datastore_status", "Current status of the datastore (ListDatastores/GetDatastore): 1 on the series of its status.", "gauge", &["datastore_id", "status"]),
    ("healthimaging_discovery_last_sweep_timestamp_seconds", "When a discovery sweep of the datastore last completed, by sweep (changes: updatedAt window search; full: listing of every image set), in Unix seconds.", "gauge", &["datastore_id", "sweep"]),
    ("healthimaging_shard_ordinal", "This exporter instance's shard (sharding.shard).", "gauge", &[]),
    ("healthimaging_total_shards", "Number of shards the image sets are split into (sharding.total_shards).", "gauge", &[]),
];

const F_INFO: usize = 0;
const F_STATUS: usize = 1;
const F_STATE: usize = 2;
const F_TIER: usize = 3;
const F_VERSION: usize = 4;
const F_FORCED: usize = 5;
const F_STATUS_CHANGED: usize = 6;
const F_CREATED: usize = 7;
const F_UPDATED: usize = 8;
const F_DELETED: usize = 9;
const F_LAST_ACCESSED: usize = 10;
const F_UP: usize = 11;
const F_LAST_SUCCESS: usize = 12;
const F_IMAGE_SETS: usize = 13;
const F_WORKFLOW_TRANSITIONS: usize = 14;
const F_TIER_TRANSITIONS: usize = 15;
const F_TARGETS: usize = 16;
const F_DETAIL_OMITTED: usize = 17;
const F_DATASTORE_INFO: usize = 18;
const F_DATASTORE_STATUS: usize = 19;
const F_LAST_SWEEP: usize = 20;
const F_SHARD: usize = 21;
const F_TOTAL_SHARDS: usize = 22;

/// Appends `value` escaped for a label value (backslash, quote, newline).
fn push_escaped(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str(r#"\""#),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

/// Appends a sample value: integers without a fraction, others in shortest form.
fn push_value(out: &mut String, value: f64) {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else if value.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(value));
    } else if value.is_nan() {
        out.push_str("NaN");
    } else if value > 0.0 {
        out.push_str("+Inf");
    } else {
        out.push_str("-Inf");
    }
}

/// Writes one family: HELP and TYPE before its first sample, none if it has no samples.
struct Family<'a> {
    out: &'a mut String,
    index: usize,
    started: bool,
    enabled: bool,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, index: usize, view: &View) -> Self {
        Family {
            out,
            index,
            started: false,
            enabled: view.enabled.get(index).copied().unwrap_or(true),
        }
    }

    /// Appends `name{ids,extra...} value`, where `ids` are an image set's id labels.
    fn sample(&mut self, ids: Option<&ImageSetKey>, extra: &[(&str, &str)], value: f64) {
        if !self.enabled {
            return;
        }
        let (name, help, kind, _) = FAMILIES[self.index];
        let out = &mut *self.out;
        if !self.started {
            self.started = true;
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        out.push_str(name);
        if ids.is_some() || !extra.is_empty() {
            out.push('{');
            if let Some(key) = ids {
                out.push_str("datastore_id=\"");
                out.push_str(key.datastore_id.as_str());
                out.push_str("\",image_set_id=\"");
                out.push_str(key.image_set_id.as_str());
                out.push('"');
            }
            for (i, (k, v)) in extra.iter().enumerate() {
                if i > 0 || ids.is_some() {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                push_escaped(out, v);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        push_value(out, value);
        out.push('\n');
    }
}

/// Which image sets get per-image-set series (aggregates are always rendered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// Every image set.
    All,
    /// Only image sets needing attention: in progress, failed, not ACTIVE, or not up.
    Unhealthy,
    /// None: aggregates only.
    None,
}

impl Detail {
    /// Whether `entry` gets per-image-set series.
    pub fn includes(self, entry: &Entry) -> bool {
        match self {
            Detail::All => true,
            Detail::None => false,
            Detail::Unhealthy => {
                let Some(snap) = &entry.snapshot else {
                    // Never read: a configured set is not up (worth showing); a
                    // discovered one is merely not polled yet.
                    return entry.origin == Origin::Configured;
                };
                !entry.up
                    || snap.state != ImageSetState::Active
                    || snap
                        .workflow_status
                        .as_ref()
                        .is_some_and(|s| s.is_in_progress() || s.is_failed())
            }
        }
    }
}

/// Writes `key`'s sample of per-image-set family `family`, if it has one.
fn per_set_sample(w: &mut Family<'_>, family: usize, key: &ImageSetKey, entry: &Entry) {
    let bool01 = |b: bool| if b { 1.0 } else { 0.0 };
    match family {
        F_UP => return w.sample(Some(key), &[], bool01(entry.up)),
        F_LAST_SUCCESS => {
            if let Some(t) = entry.last_success {
                w.sample(Some(key), &[], t);
            }
            return;
        }
        _ => {}
    }
    let Some(snap) = &entry.snapshot else { return };
    let time = match family {
        F_INFO => {
            let mut version = itoa::Buffer::new();
            let primary = snap
                .is_primary
                .map_or("", |p| if p { "true" } else { "false" });
            let arn = snap.image_set_arn.as_deref().unwrap_or("");
            let labels = [
                ("version_id", version.format(snap.version_id.get())),
                ("image_set_arn", arn),
                ("is_primary", primary),
            ];
            return w.sample(Some(key), &labels, 1.0);
        }
        F_STATUS => {
            if let Some(status) = &snap.workflow_status {
                w.sample(Some(key), &[("status", status.as_str())], 1.0);
            }
            return;
        }
        F_STATE => return w.sample(Some(key), &[("state", snap.state.as_str())], 1.0),
        F_TIER => {
            if let Some(tier) = &snap.storage_tier {
                w.sample(Some(key), &[("tier", tier.as_str())], 1.0);
            }
            return;
        }
        F_VERSION => return w.sample(Some(key), &[], snap.version_id.get() as f64),
        F_FORCED => return w.sample(Some(key), &[], bool01(snap.forced == Some(true))),
        F_STATUS_CHANGED => entry.status_since,
        F_CREATED => snap.created_at,
        F_UPDATED => snap.updated_at,
        F_DELETED => snap.deleted_at,
        F_LAST_ACCESSED => snap.last_accessed_at,
        _ => None,
    };
    if let Some(t) = time {
        w.sample(Some(key), &[], t);
    }
}

/// How the store is rendered: detail level, limits and which families are enabled.
#[derive(Debug, Clone)]
pub struct View {
    /// Detail for every image set; `None`: all for configured, unhealthy for discovered.
    pub detail: Option<Detail>,
    /// Most discovered image sets with per-image-set series.
    pub max_detailed: usize,
    /// Per entry of [`FAMILIES`]: rendered or not (`metrics.include`/`exclude`).
    pub enabled: Vec<bool>,
    /// This instance's shard and the number of shards.
    pub sharding: ShardingConfig,
}

impl View {
    /// The view `[metrics]` and `[sharding]` ask for.
    pub fn new(metrics: &MetricsConfig, sharding: ShardingConfig) -> Self {
        View {
            detail: metrics.image_set_detail,
            max_detailed: metrics.max_detailed_image_sets,
            enabled: FAMILIES
                .iter()
                .map(|(name, ..)| metrics.family_enabled(name))
                .collect(),
            sharding,
        }
    }

    /// Every family, `detail` for every image set, no limit (benchmarks and tests).
    pub fn with_detail(detail: Detail) -> Self {
        View {
            detail: Some(detail),
            max_detailed: usize::MAX,
            enabled: vec![true; FAMILIES.len()],
            sharding: ShardingConfig::default(),
        }
    }

    fn shows(&self, entry: &Entry) -> bool {
        let detail = self.detail.unwrap_or(match entry.origin {
            Origin::Configured => Detail::All,
            Origin::Discovered => Detail::Unhealthy,
        });
        detail.includes(entry)
    }
}

fn render_transitions(
    out: &mut String,
    family: usize,
    view: &View,
    counts: &BTreeMap<TransitionKey, u64>,
) {
    let mut w = Family::new(out, family, view);
    for ((ds, from, to), n) in counts {
        let labels = [
            ("datastore_id", ds.as_str()),
            ("from", from.as_str()),
            ("to", to.as_str()),
        ];
        w.sample(None, &labels, *n as f64);
    }
}

/// Rough bytes per per-image-set sample line, to size the buffer once.
const LINE_ESTIMATE: usize = 150;

/// Appends every store-derived family to `out`, with per-image-set series as `view` says.
pub fn render(state: &State, view: &View, out: &mut String) {
    let mut omitted = 0usize;
    let mut shown: Vec<(&ImageSetKey, &Entry)> = Vec::new();
    let mut discovered = 0usize;
    for (key, entry) in &state.entries {
        if !view.shows(entry) {
            continue;
        }
        // The cap protects against discovery's scale; configured sets were listed by hand.
        if entry.origin == Origin::Discovered {
            if discovered == view.max_detailed {
                omitted += 1;
                continue;
            }
            discovered += 1;
        }
        shown.push((key, entry));
    }
    out.reserve(shown.len() * (F_LAST_SUCCESS + 1) * LINE_ESTIMATE + 64 * 1024);
    for family in F_INFO..=F_LAST_SUCCESS {
        let mut w = Family::new(out, family, view);
        if !w.enabled {
            continue;
        }
        for (key, entry) in &shown {
            per_set_sample(&mut w, family, key, entry);
        }
    }
    let mut counts: BTreeMap<(DatastoreId, &str, &str, &str), u64> = BTreeMap::new();
    for (key, entry) in &state.entries {
        let (status, st, tier) = match (&entry.snapshot, &entry.listed) {
            (Some(s), _) => (
                s.workflow_status.as_ref().map_or(ABSENT, |s| s.as_str()),
                s.state.as_str(),
                s.storage_tier.as_ref().map_or(ABSENT, |t| t.as_str()),
            ),
            (None, Some(l)) => (
                ABSENT,
                ABSENT,
                l.storage_tier.as_ref().map_or(ABSENT, |t| t.as_str()),
            ),
            (None, None) => (ABSENT, ABSENT, ABSENT),
        };
        *counts
            .entry((key.datastore_id, status, st, tier))
            .or_default() += 1;
    }
    let mut w = Family::new(out, F_IMAGE_SETS, view);
    for ((ds, status, st, tier), n) in counts {
        let labels = [
            ("datastore_id", ds.as_str()),
            ("workflow_status", status),
            ("state", st),
            ("storage_tier", tier),
        ];
        w.sample(None, &labels, n as f64);
    }
    render_transitions(
        out,
        F_WORKFLOW_TRANSITIONS,
        view,
        &state.workflow_transitions,
    );
    render_transitions(
        out,
        F_TIER_TRANSITIONS,
        view,
        &state.storage_tier_transitions,
    );
    Family::new(out, F_TARGETS, view).sample(None, &[], state.entries.len() as f64);
    Family::new(out, F_DETAIL_OMITTED, view).sample(None, &[], omitted as f64);
    let mut w = Family::new(out, F_DATASTORE_INFO, view);
    for (id, d) in &state.datastores {
        w.sample(
            None,
            &[("datastore_id", id.as_str()), ("datastore_name", &d.name)],
            1.0,
        );
    }
    let mut w = Family::new(out, F_DATASTORE_STATUS, view);
    for (id, d) in &state.datastores {
        w.sample(
            None,
            &[("datastore_id", id.as_str()), ("status", &d.status)],
            1.0,
        );
    }
    let mut w = Family::new(out, F_LAST_SWEEP, view);
    for ((id, sweep), at) in &state.sweeps {
        w.sample(
            None,
            &[("datastore_id", id.as_str()), ("sweep", sweep.as_str())],
            *at,
        );
    }
    Family::new(out, F_SHARD, view).sample(None, &[], f64::from(view.sharding.shard));
    Family::new(out, F_TOTAL_SHARDS, view).sample(None, &[], f64::from(view.sharding.total_shards));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageSetTarget;
    use crate::ids::{ImageSetId, VersionId};
    use crate::model::{Snapshot, StorageTier, WorkflowStatus};
    use crate::store::Store;

    fn store_with(statuses: &[&str]) -> Store {
        let ds = DatastoreId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let targets: Vec<_> = (0..statuses.len())
            .map(|i| ImageSetTarget {
                datastore_id: ds,
                image_set_id: ImageSetId::parse(&format!("{i:032x}")).unwrap(),
                version_id: None,
            })
            .collect();
        let store = Store::new(&targets);
        for (t, status) in targets.iter().zip(statuses) {
            let snap = Snapshot {
                version_id: VersionId::new(1),
                workflow_status: Some(WorkflowStatus::from_api(status)),
                state: ImageSetState::Active,
                storage_tier: Some(StorageTier::FrequentAccess),
                image_set_arn: None,
                is_primary: Some(true),
                forced: None,
                message: None,
                created_at: Some(1.0),
                updated_at: Some(2.0),
                deleted_at: None,
                last_accessed_at: None,
            };
            store.record_success(&t.key(), snap, 3.0);
        }
        store
    }

    fn series(text: &str, name: &str) -> usize {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .count()
    }

    fn text(state: &State, detail: Detail) -> String {
        let mut out = String::new();
        render(state, &View::with_detail(detail), &mut out);
        out
    }

    #[test]
    fn family_constants_match_the_table() {
        for (i, name) in [
            (F_INFO, "healthimaging_image_set_info"),
            (F_STATUS, "healthimaging_image_set_workflow_status"),
            (F_STATE, "healthimaging_image_set_state"),
            (F_TIER, "healthimaging_image_set_storage_tier"),
            (F_VERSION, "healthimaging_image_set_version"),
            (F_FORCED, "healthimaging_image_set_forced"),
            (
                F_STATUS_CHANGED,
                "healthimaging_image_set_status_changed_timestamp_seconds",
            ),
            (
                F_CREATED,
                "healthimaging_image_set_created_timestamp_seconds",
            ),
            (
                F_UPDATED,
                "healthimaging_image_set_updated_timestamp_seconds",
            ),
            (
                F_DELETED,
                "healthimaging_image_set_deleted_timestamp_seconds",
            ),
            (
                F_LAST_ACCESSED,
                "healthimaging_image_set_last_accessed_timestamp_seconds",
            ),
            (F_UP, "healthimaging_image_set_up"),
            (
                F_LAST_SUCCESS,
                "healthimaging_image_set_last_success_timestamp_seconds",
            ),
            (F_IMAGE_SETS, "healthimaging_image_sets"),
            (
                F_WORKFLOW_TRANSITIONS,
                "healthimaging_workflow_transitions_total",
            ),
            (
                F_TIER_TRANSITIONS,
                "healthimaging_storage_tier_transitions_total",
            ),
            (F_TARGETS, "healthimaging_targets"),
        ] {
            assert_eq!(FAMILIES[i].0, name);
        }
    }

    #[test]
    fn values_are_formatted_as_prometheus_expects() {
        let text = |v: f64| {
            let mut out = String::new();
            push_value(&mut out, v);
            out
        };
        assert_eq!(text(1.0), "1");
        assert_eq!(text(0.0), "0");
        assert_eq!(text(1_700_000_000.5), "1700000000.5");
        assert_eq!(text(0.005), "0.005");
        assert_eq!(text(f64::INFINITY), "+Inf");
        assert_eq!(text(f64::NAN), "NaN");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        push_escaped(&mut out, "a\\b\"c\nd");
        assert_eq!(out, r#"a\\b\"c\nd"#);
    }

    #[test]
    fn detail_levels_limit_per_image_set_series_but_never_aggregates() {
        let store = store_with(&["IMPORTED", "IMPORTING", "IMPORT_FAILED", "COPIED"]);
        let state = store.read();
        let all = text(&state, Detail::All);
        assert_eq!(series(&all, "healthimaging_image_set_workflow_status"), 4);
        let unhealthy = text(&state, Detail::Unhealthy);
        assert_eq!(
            series(&unhealthy, "healthimaging_image_set_workflow_status"),
            2
        );
        let none = text(&state, Detail::None);
        assert_eq!(series(&none, "healthimaging_image_set_workflow_status"), 0);
        assert_eq!(series(&none, "healthimaging_image_set_up"), 0);
        for families in [&all, &unhealthy, &none] {
            assert_eq!(series(families, "healthimaging_image_sets"), 4);
            assert_eq!(series(families, "healthimaging_targets"), 1);
        }
    }

    #[test]
    fn only_discovered_image_sets_are_capped() {
        let store = store_with(&["IMPORTED", "IMPORTED", "IMPORTED"]);
        let ds = DatastoreId::parse("0123456789abcdef0123456789abcdef").unwrap();
        for n in 0..4u32 {
            let id = ImageSetId::parse(&format!("{:032x}", 1000 + n)).unwrap();
            store.record_listed(
                ds,
                crate::model::ImageSetSummary {
                    image_set_id: id,
                    version: None,
                    created_at: None,
                    updated_at: None,
                    storage_tier: None,
                    is_primary: None,
                },
            );
            let key = ImageSetKey {
                datastore_id: ds,
                image_set_id: id,
            };
            let mut snap = store.read().entries[&store_key(&store, 0)]
                .snapshot
                .clone()
                .unwrap();
            snap.workflow_status = Some(WorkflowStatus::ImportFailed);
            store.record_success(&key, snap, 4.0);
        }
        let mut view = View::with_detail(Detail::All);
        view.detail = None;
        view.max_detailed = 2;
        let mut out = String::new();
        render(&store.read(), &view, &mut out);
        // 3 configured (all shown) + 2 of the 4 failed discovered ones.
        assert_eq!(series(&out, "healthimaging_image_set_up"), 5);
        assert!(out.contains("healthimaging_image_set_detail_omitted 2"));
        assert!(out.contains("healthimaging_image_sets{datastore_id=\"0123456789abcdef0123456789abcdef\",workflow_status=\"IMPORT_FAILED\",state=\"ACTIVE\",storage_tier=\"FREQUENT_ACCESS\"} 4"));
    }

    fn store_key(store: &Store, n: usize) -> ImageSetKey {
        *store.read().entries.keys().nth(n).unwrap()
    }
}
