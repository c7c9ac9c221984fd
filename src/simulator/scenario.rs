//! Scenario files: the simulator's initial datastores, image sets, timelines and faults.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::corruption::Corruption;
use super::vocab;

/// A scenario could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or a field has a bad value (the message names line and field).
    #[error("invalid scenario{origin}: {message}")]
    Parse {
        /// ` in <path>` when parsed from a file.
        origin: String,
        /// The parser's message, with line, column and field.
        message: String,
    },
    /// The values parse but contradict each other.
    #[error("invalid scenario{origin}: {field}: {message}")]
    Invalid {
        /// ` in <path>` when parsed from a file.
        origin: String,
        /// The offending field, as a path like `image_sets[2].datastore_id`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(pub String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&value).map_err(|why| format!("invalid {} `{}`: {}", $what, value, why))?;
                Ok($name(value))
            }
        }
    };
}

fn id_check(s: &str) -> Result<(), String> {
    if vocab::is_resource_id(s) {
        Ok(())
    } else {
        Err("expected 32 characters of 0-9 and a-z".into())
    }
}

fn one_of(allowed: &'static [&'static str]) -> impl Fn(&str) -> Result<(), String> {
    move |s| {
        if allowed.contains(&s) {
            Ok(())
        } else {
            Err(format!("expected one of {}", allowed.join(", ")))
        }
    }
}

checked_string!(
    /// A datastore id from a scenario.
    DatastoreIdSpec, id_check, "datastore_id");
checked_string!(
    /// An image set id from a scenario.
    ImageSetIdSpec, id_check, "image_set_id");
checked_string!(
    /// A workflow status from a scenario.
    WorkflowStatusSpec, |s| one_of(vocab::WORKFLOW_STATUSES)(s), "workflow_status");
checked_string!(
    /// An image set state from a scenario.
    StateSpec, |s| one_of(vocab::STATES)(s), "state");
checked_string!(
    /// A storage tier from a scenario.
    StorageTierSpec, |s| one_of(vocab::STORAGE_TIERS)(s), "storage_tier");
checked_string!(
    /// A datastore status from a scenario.
    DatastoreStatusSpec, |s| one_of(vocab::DATASTORE_STATUSES)(s), "status");
checked_string!(
    /// A version id from a scenario.
    VersionSpec, |s| vocab::parse_version(s).map(|_| ()).ok_or_else(|| "expected a decimal number".to_string()), "version_id");

impl VersionSpec {
    /// The version as a number (validated at parse time).
    pub fn number(&self) -> u64 {
        vocab::parse_version(&self.0).unwrap_or(0)
    }
}

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seed for the fault dice; random when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Region used in ARNs.
    #[serde(default = "default_region")]
    pub region: String,
    /// Account id used in ARNs.
    #[serde(default = "default_account")]
    pub account_id: String,
    /// Injected faults.
    #[serde(default)]
    pub faults: FaultsSpec,
    /// Datastores; image sets may only reference these (when any are listed).
    #[serde(default)]
    pub datastores: Vec<DatastoreSpec>,
    /// Image sets and their timelines.
    #[serde(default)]
    pub image_sets: Vec<ImageSetSpec>,
    /// Bulk image sets with generated ids, for load and scale tests.
    #[serde(default)]
    pub generate: Vec<GenerateSpec>,
}

/// `count` image sets in one datastore, with ids derived from the block's position and
/// the index: `{block:016x}{index:016x}` (so they never collide with each other).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSpec {
    /// Owning datastore.
    pub datastore_id: DatastoreIdSpec,
    /// How many image sets (at most 1,000,000 per block).
    pub count: u32,
    /// Their workflow status (default IMPORTED).
    #[serde(default)]
    pub workflow_status: Option<WorkflowStatusSpec>,
    /// Their state (default ACTIVE).
    #[serde(default)]
    pub state: Option<StateSpec>,
    /// Their storage tier (default FREQUENT_ACCESS).
    #[serde(default)]
    pub storage_tier: Option<StorageTierSpec>,
    /// Weights of workflow statuses, instead of one `workflow_status`.
    #[serde(default)]
    pub workflow_status_mix: Option<BTreeMap<String, u32>>,
    /// Weights of storage tiers, instead of one `storage_tier`.
    #[serde(default)]
    pub storage_tier_mix: Option<BTreeMap<String, u32>>,
    /// `updatedAt` spread over this span before start (default: all updated 1 day before).
    #[serde(default, with = "humantime_serde")]
    pub updated_spread: Option<Duration>,
}

impl GenerateSpec {
    /// The id of the `index`-th image set of generate block `block`.
    pub fn image_set_id(block: usize, index: u32) -> String {
        format!("{block:016x}{index:016x}")
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_account() -> String {
    "123456789012".into()
}

/// Fault injection settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultsSpec {
    /// Share of API requests answered with 429 ThrottlingException (0..=1).
    #[serde(default)]
    pub throttle_ratio: f64,
    /// Share of API requests answered with 500 InternalServerException (0..=1).
    #[serde(default)]
    pub error_ratio: f64,
    /// Share of signed API requests answered with 403 AccessDeniedException (0..=1).
    #[serde(default)]
    pub access_denied_ratio: f64,
    /// Delay added before every API answer.
    #[serde(default, with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// How successful API answers are corrupted, if at all.
    #[serde(default)]
    pub corruption: Option<Corruption>,
    /// Share of successful API answers corrupted (0..=1; default 1 when `corruption` is set).
    #[serde(default)]
    pub corruption_ratio: Option<f64>,
}

impl FaultsSpec {
    /// The corruption mode and the share of successful answers it applies to.
    pub fn corruption(&self) -> Option<(Corruption, f64)> {
        self.corruption
            .map(|mode| (mode, self.corruption_ratio.unwrap_or(1.0)))
    }
}

/// A datastore.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreSpec {
    /// Its id.
    pub id: DatastoreIdSpec,
    /// Its name (`[A-Za-z0-9._/#-]+`; default `datastore-<first 8 characters of the id>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Its status (default ACTIVE).
    #[serde(default)]
    pub status: Option<DatastoreStatusSpec>,
}

/// An image set's initial properties and timeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSetSpec {
    /// Owning datastore.
    pub datastore_id: DatastoreIdSpec,
    /// The image set id.
    pub image_set_id: ImageSetIdSpec,
    /// Initial version (default 1).
    #[serde(default)]
    pub version_id: Option<VersionSpec>,
    /// Initial workflow status (default IMPORTED).
    #[serde(default)]
    pub workflow_status: Option<WorkflowStatusSpec>,
    /// Initial state (default ACTIVE).
    #[serde(default)]
    pub state: Option<StateSpec>,
    /// Initial storage tier (default FREQUENT_ACCESS).
    #[serde(default)]
    pub storage_tier: Option<StorageTierSpec>,
    /// Whether it is the primary image set (default true).
    #[serde(default)]
    pub is_primary: Option<bool>,
    /// `overrides.forced`, when set.
    #[serde(default)]
    pub forced: Option<bool>,
    /// The API's failure message, when set.
    #[serde(default)]
    pub message: Option<String>,
    /// How long before simulator start it was created (default 1 day).
    #[serde(default, with = "humantime_serde")]
    pub created_ago: Option<Duration>,
    /// How long before simulator start it was last updated (default: when created).
    #[serde(default, with = "humantime_serde")]
    pub updated_ago: Option<Duration>,
    /// How long before simulator start it was last accessed (absent when unset).
    #[serde(default, with = "humantime_serde")]
    pub last_accessed_ago: Option<Duration>,
    /// DICOM tags SearchImageSets returns, keyed as in the model's `DICOMTags` shape.
    #[serde(default)]
    pub dicom_tags: Option<BTreeMap<String, serde_json::Value>>,
    /// Changes applied at fixed offsets from simulator start.
    #[serde(default)]
    pub timeline: Vec<TimelineStep>,
}

/// One change applied `after` the simulator started.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineStep {
    /// Offset from simulator start.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// New workflow status.
    #[serde(default)]
    pub workflow_status: Option<WorkflowStatusSpec>,
    /// New state.
    #[serde(default)]
    pub state: Option<StateSpec>,
    /// New storage tier.
    #[serde(default)]
    pub storage_tier: Option<StorageTierSpec>,
    /// New version: creates a version, the older one stays readable.
    #[serde(default)]
    pub version_id: Option<VersionSpec>,
    /// New message; an empty string clears it.
    #[serde(default)]
    pub message: Option<String>,
    /// New `overrides.forced`.
    #[serde(default)]
    pub forced: Option<bool>,
    /// New primary flag.
    #[serde(default)]
    pub is_primary: Option<bool>,
    /// Removes the image set (GetImageSet answers 404 afterwards).
    #[serde(default)]
    pub delete: bool,
}

impl Scenario {
    /// An empty scenario: no datastores, no image sets, no faults.
    pub fn empty() -> Self {
        Scenario {
            seed: None,
            region: default_region(),
            account_id: default_account(),
            faults: FaultsSpec::default(),
            datastores: Vec::new(),
            image_sets: Vec::new(),
            generate: Vec::new(),
        }
    }

    /// Reads and validates a scenario file.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &format!(" in {}", path.display()))
    }

    /// Parses and validates scenario text; `origin` is appended to error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        scenario
            .validate()
            .map_err(|(field, message)| ScenarioError::Invalid {
                origin: origin.to_string(),
                field,
                message,
            })?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        check_faults("faults", &self.faults)?;
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err((
                "account_id".into(),
                format!("`{}` is not 12 digits", self.account_id),
            ));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err((
                "region".into(),
                format!("`{}` is not a region name", self.region),
            ));
        }
        let mut datastores = BTreeSet::new();
        for (n, ds) in self.datastores.iter().enumerate() {
            if !datastores.insert(&ds.id.0) {
                return Err((
                    format!("datastores[{n}].id"),
                    format!("duplicate datastore `{}`", ds.id.0),
                ));
            }
            if let Some(name) = ds.name.as_deref().filter(|n| !vocab::is_datastore_name(n)) {
                return Err((
                    format!("datastores[{n}].name"),
                    format!("`{name}` does not match [A-Za-z0-9._/#-]+ (1 to 256 characters)"),
                ));
            }
        }
        for (n, block) in self.generate.iter().enumerate() {
            if !datastores.is_empty() && !datastores.contains(&block.datastore_id.0) {
                return Err((
                    format!("generate[{n}].datastore_id"),
                    format!(
                        "datastore `{}` is not listed in [[datastores]]",
                        block.datastore_id.0
                    ),
                ));
            }
            if block.count == 0 || block.count > 1_000_000 {
                return Err((
                    format!("generate[{n}].count"),
                    format!("{} is not between 1 and 1000000", block.count),
                ));
            }
            let mixes = [
                (
                    "workflow_status_mix",
                    &block.workflow_status_mix,
                    block.workflow_status.is_some(),
                    "workflow_status",
                    vocab::WORKFLOW_STATUSES,
                ),
                (
                    "storage_tier_mix",
                    &block.storage_tier_mix,
                    block.storage_tier.is_some(),
                    "storage_tier",
                    vocab::STORAGE_TIERS,
                ),
            ];
            for (name, mix, single, single_name, allowed) in mixes {
                let Some(mix) = mix else { continue };
                let field = format!("generate[{n}].{name}");
                if single {
                    return Err((
                        field,
                        format!("set either {single_name} or {name}, not both"),
                    ));
                }
                for value in mix.keys() {
                    if !allowed.contains(&value.as_str()) {
                        return Err((
                            format!("{field}.{value}"),
                            format!("unknown value, expected one of {}", allowed.join(", ")),
                        ));
                    }
                }
                if mix.values().map(|w| u64::from(*w)).sum::<u64>() == 0 {
                    return Err((field, "the weights add up to 0".into()));
                }
            }
        }
        for (n, set) in self.image_sets.iter().enumerate() {
            let id = &set.image_set_id.0;
            let block = u64::from_str_radix(&id[..16], 16)
                .ok()
                .and_then(|b| usize::try_from(b).ok());
            let index = u32::from_str_radix(&id[16..], 16).ok();
            if let (Some(b), Some(i)) = (block, index) {
                if self.generate.get(b).is_some_and(|g| i < g.count) {
                    return Err((
                        format!("image_sets[{n}].image_set_id"),
                        format!("`{id}` collides with generated image set {i} of generate[{b}]"),
                    ));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (n, set) in self.image_sets.iter().enumerate() {
            let at = |f: &str| format!("image_sets[{n}].{f}");
            if !datastores.is_empty() && !datastores.contains(&set.datastore_id.0) {
                return Err((
                    at("datastore_id"),
                    format!(
                        "datastore `{}` is not listed in [[datastores]]",
                        set.datastore_id.0
                    ),
                ));
            }
            if !seen.insert((&set.datastore_id.0, &set.image_set_id.0)) {
                return Err((
                    at("image_set_id"),
                    format!("duplicate image set `{}`", set.image_set_id.0),
                ));
            }
            for (tag, value) in set.dicom_tags.iter().flatten() {
                vocab::check_dicom_tag(tag, value).map_err(|why| {
                    let why = why.strip_prefix(&format!("{tag}: ")).unwrap_or(&why);
                    (format!("image_sets[{n}].dicom_tags.{tag}"), why.to_string())
                })?;
            }
            if let (Some(created), Some(updated)) = (set.created_ago, set.updated_ago) {
                if updated > created {
                    return Err((at("updated_ago"), "must not be before created_ago".into()));
                }
            }
            let mut version = set.version_id.as_ref().map_or(1, VersionSpec::number);
            let mut last_after = Duration::ZERO;
            for (k, step) in set.timeline.iter().enumerate() {
                let field = |f: &str| format!("image_sets[{n}].timeline[{k}].{f}");
                if step.after < last_after {
                    return Err((field("after"), "steps must be in time order".into()));
                }
                last_after = step.after;
                if let Some(v) = &step.version_id {
                    if v.number() <= version {
                        return Err((
                            field("version_id"),
                            format!(
                                "`{}` must be greater than the current version {version}",
                                v.0
                            ),
                        ));
                    }
                    version = v.number();
                }
            }
        }
        Ok(())
    }
}

/// Checks fault ratios are within 0..=1 and a corruption ratio comes with a mode.
pub fn check_faults(prefix: &str, faults: &FaultsSpec) -> Result<(), (String, String)> {
    for (name, value) in [
        ("throttle_ratio", faults.throttle_ratio),
        ("error_ratio", faults.error_ratio),
        ("access_denied_ratio", faults.access_denied_ratio),
        ("corruption_ratio", faults.corruption_ratio.unwrap_or(0.0)),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err((
                format!("{prefix}.{name}"),
                format!("{value} is not between 0 and 1"),
            ));
        }
    }
    if faults.corruption_ratio.is_some() && faults.corruption.is_none() {
        return Err((
            format!("{prefix}.corruption_ratio"),
            "set without corruption (the mode it applies to)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DS: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn minimal_scenario_parses_with_defaults() {
        let text = format!("[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{DS}\"\n");
        let s = Scenario::parse(&text, "").unwrap();
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.image_sets.len(), 1);
        assert!(s.image_sets[0].workflow_status.is_none());
    }

    #[test]
    fn corruption_faults_parse_and_are_validated() {
        let s = Scenario::parse("[faults]\ncorruption = \"truncated\"\n", "").unwrap();
        assert_eq!(s.faults.corruption(), Some((Corruption::Truncated, 1.0)));
        let s = Scenario::parse(
            "[faults]\ncorruption = \"reset\"\ncorruption_ratio = 0.25\n",
            "",
        )
        .unwrap();
        assert_eq!(s.faults.corruption(), Some((Corruption::Reset, 0.25)));
        for (text, expect) in [
            (
                "[faults]\ncorruption = \"gzip\"\n",
                "invalid corruption `gzip`",
            ),
            (
                "[faults]\ncorruption = \"malformed\"\ncorruption_ratio = 2\n",
                "faults.corruption_ratio: 2 is not between 0 and 1",
            ),
            (
                "[faults]\ncorruption_ratio = 0.5\n",
                "faults.corruption_ratio: set without corruption",
            ),
        ] {
            let err = Scenario::parse(text, "").unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn timeline_versions_must_increase() {
        let text = format!(
            "[[image_sets]]\ndatastore_id = \"{DS}\"\nimage_set_id = \"{DS}\"\nversion_id = \"3\"\n\
             [[image_sets.timeline]]\nafter = \"1s\"\nversion_id = \"2\"\n"
        );
        let err = Scenario::parse(&text, "").unwrap_err().to_string();
        assert!(
            err.contains("image_sets[0].timeline[0].version_id"),
            "{err}"
        );
    }
}
