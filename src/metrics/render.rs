//! Renders the store into metric families at scrape time (pure: state in, families out).

use std::collections::BTreeMap;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::ids::{DatastoreId, ImageSetKey};
use crate::store::{Entry, State, TransitionKey};
use crate::transitions::ABSENT;

/// Name, help and type of every family this module renders, for the collector's descs.
pub const FAMILIES: &[(&str, &str, MetricType, &[&str])] = &[
    ("healthimaging_image_set_info", "Identity of a watched image set: constant 1 labelled with its version, ARN and primary flag.", MetricType::GAUGE, &["datastore_id", "image_set_id", "version_id", "image_set_arn", "is_primary"]),
    ("healthimaging_image_set_workflow_status", "Current workflow status of the image set: 1 on the series of the status it is in.", MetricType::GAUGE, &["datastore_id", "image_set_id", "status"]),
    ("healthimaging_image_set_state", "Current state of the image set: 1 on the series of the state it is in.", MetricType::GAUGE, &["datastore_id", "image_set_id", "state"]),
    ("healthimaging_image_set_storage_tier", "Current storage tier of the image set: 1 on the series of the tier it is in.", MetricType::GAUGE, &["datastore_id", "image_set_id", "tier"]),
    ("healthimaging_image_set_version", "Numeric version id of the image set's watched version.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_forced", "Whether the image set version was copied or updated with the force flag (overrides.forced): 1 yes, 0 no.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_status_changed_timestamp_seconds", "When the current workflow status was first observed by the exporter (the image set's updatedAt on first sight), in Unix seconds.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_created_timestamp_seconds", "When the image set was created according to the API, in Unix seconds.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_updated_timestamp_seconds", "When the image set's properties were last updated according to the API, in Unix seconds.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_deleted_timestamp_seconds", "When the image set was deleted according to the API, in Unix seconds.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_last_accessed_timestamp_seconds", "When the image set was last accessed according to the API, in Unix seconds.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_up", "Whether the last GetImageSet poll of the image set succeeded: 1 yes, 0 no.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_set_last_success_timestamp_seconds", "When a GetImageSet poll of the image set last succeeded, in Unix seconds.", MetricType::GAUGE, &["datastore_id", "image_set_id"]),
    ("healthimaging_image_sets", "Number of watched image sets by datastore, workflow status, state and storage tier (unknown until first read).", MetricType::GAUGE, &["datastore_id", "workflow_status", "state", "storage_tier"]),
    ("healthimaging_workflow_transitions_total", "Workflow status transitions observed by the exporter, by datastore and from/to status.", MetricType::COUNTER, &["datastore_id", "from", "to"]),
    ("healthimaging_storage_tier_transitions_total", "Storage tier transitions observed by the exporter, by datastore and from/to tier.", MetricType::COUNTER, &["datastore_id", "from", "to"]),
    ("healthimaging_targets", "Number of image sets the exporter watches.", MetricType::GAUGE, &[]),
];

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_gauge(g);
    m
}

fn counter(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_counter(c);
    m
}

/// Collects metrics per family name, then emits the non-empty families in table order.
struct Families {
    metrics: Vec<Vec<Metric>>,
}

impl Families {
    fn new() -> Self {
        Families {
            metrics: vec![Vec::new(); FAMILIES.len()],
        }
    }

    fn push(&mut self, name: &str, metric: Metric) {
        if let Some(i) = FAMILIES.iter().position(|f| f.0 == name) {
            self.metrics[i].push(metric);
        }
    }

    fn finish(self) -> Vec<MetricFamily> {
        FAMILIES
            .iter()
            .zip(self.metrics)
            .filter(|(_, metrics)| !metrics.is_empty())
            .map(|((name, help, kind, _), metrics)| {
                let mut mf = MetricFamily::default();
                mf.set_name(name.to_string());
                mf.set_help(help.to_string());
                mf.set_field_type(*kind);
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

fn per_set(key: &ImageSetKey) -> Vec<LabelPair> {
    vec![
        label("datastore_id", key.datastore_id.as_str()),
        label("image_set_id", key.image_set_id.as_str()),
    ]
}

fn with(key: &ImageSetKey, name: &str, value: &str) -> Vec<LabelPair> {
    let mut labels = per_set(key);
    labels.push(label(name, value));
    labels
}

fn render_entry(out: &mut Families, key: &ImageSetKey, entry: &Entry) {
    out.push(
        "healthimaging_image_set_up",
        gauge(per_set(key), if entry.up { 1.0 } else { 0.0 }),
    );
    if let Some(t) = entry.last_success {
        out.push(
            "healthimaging_image_set_last_success_timestamp_seconds",
            gauge(per_set(key), t),
        );
    }
    let Some(snap) = &entry.snapshot else { return };
    let version = snap.version_id.to_string();
    let mut info = per_set(key);
    info.push(label("version_id", &version));
    info.push(label(
        "image_set_arn",
        snap.image_set_arn.as_deref().unwrap_or(""),
    ));
    info.push(label(
        "is_primary",
        snap.is_primary
            .map_or("", |p| if p { "true" } else { "false" }),
    ));
    out.push("healthimaging_image_set_info", gauge(info, 1.0));
    if let Some(status) = &snap.workflow_status {
        out.push(
            "healthimaging_image_set_workflow_status",
            gauge(with(key, "status", status.as_str()), 1.0),
        );
    }
    out.push(
        "healthimaging_image_set_state",
        gauge(with(key, "state", snap.state.as_str()), 1.0),
    );
    if let Some(tier) = &snap.storage_tier {
        out.push(
            "healthimaging_image_set_storage_tier",
            gauge(with(key, "tier", tier.as_str()), 1.0),
        );
    }
    out.push(
        "healthimaging_image_set_version",
        gauge(per_set(key), snap.version_id.get() as f64),
    );
    out.push(
        "healthimaging_image_set_forced",
        gauge(
            per_set(key),
            if snap.forced == Some(true) { 1.0 } else { 0.0 },
        ),
    );
    let times = [
        (
            "healthimaging_image_set_status_changed_timestamp_seconds",
            entry.status_since,
        ),
        (
            "healthimaging_image_set_created_timestamp_seconds",
            snap.created_at,
        ),
        (
            "healthimaging_image_set_updated_timestamp_seconds",
            snap.updated_at,
        ),
        (
            "healthimaging_image_set_deleted_timestamp_seconds",
            snap.deleted_at,
        ),
        (
            "healthimaging_image_set_last_accessed_timestamp_seconds",
            snap.last_accessed_at,
        ),
    ];
    for (name, value) in times {
        if let Some(t) = value {
            out.push(name, gauge(per_set(key), t));
        }
    }
}

fn render_transitions(out: &mut Families, name: &str, counts: &BTreeMap<TransitionKey, u64>) {
    for ((ds, from, to), n) in counts {
        let labels = vec![
            label("datastore_id", ds.as_str()),
            label("from", from),
            label("to", to),
        ];
        out.push(name, counter(labels, *n as f64));
    }
}

/// Renders every store-derived family.
pub fn render(state: &State) -> Vec<MetricFamily> {
    let mut out = Families::new();
    let mut counts: BTreeMap<(DatastoreId, &str, &str, &str), u64> = BTreeMap::new();
    for (key, entry) in &state.entries {
        render_entry(&mut out, key, entry);
        let snap = entry.snapshot.as_ref();
        let status = snap
            .and_then(|s| s.workflow_status.as_ref())
            .map_or(ABSENT, |s| s.as_str());
        let st = snap.map_or(ABSENT, |s| s.state.as_str());
        let tier = snap
            .and_then(|s| s.storage_tier.as_ref())
            .map_or(ABSENT, |t| t.as_str());
        *counts
            .entry((key.datastore_id, status, st, tier))
            .or_default() += 1;
    }
    for ((ds, status, st, tier), n) in counts {
        let labels = vec![
            label("datastore_id", ds.as_str()),
            label("workflow_status", status),
            label("state", st),
            label("storage_tier", tier),
        ];
        out.push("healthimaging_image_sets", gauge(labels, n as f64));
    }
    render_transitions(
        &mut out,
        "healthimaging_workflow_transitions_total",
        &state.workflow_transitions,
    );
    render_transitions(
        &mut out,
        "healthimaging_storage_tier_transitions_total",
        &state.storage_tier_transitions,
    );
    out.push(
        "healthimaging_targets",
        gauge(Vec::new(), state.entries.len() as f64),
    );
    out.finish()
}
