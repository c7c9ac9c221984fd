//! Property tests ("fuzzing" within CI's time): config parsing and the mapping of API
//! responses to snapshots never panic, whatever they are fed, and reject bad values with an
//! error that names the field.
//!
//! CI runs the default 256 cases per property (a few seconds). Longer runs:
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz`.

use aws_sdk_medicalimaging::operation::get_image_set::GetImageSetOutput;
use aws_sdk_medicalimaging::types::{
    ImageSetState, ImageSetWorkflowStatus, Overrides, StorageTier,
};
use aws_smithy_types::DateTime;
use healthimaging_exporter::config::{Config, ConfigError};
use healthimaging_exporter::ids::{DatastoreId, ImageSetId, ImageSetKey};
use healthimaging_exporter::source::{snapshot_from, ErrorKind};
use proptest::prelude::*;

const DS: &str = "0123456789abcdef0123456789abcdef";
const IS: &str = "fedcba9876543210fedcba9876543210";

fn load(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    Config::load_with_env(
        Some(&path),
        figment::providers::Env::prefixed("HEALTHIMAGING_EXPORTER_FUZZ_NEVER_SET_"),
    )
}

/// Keys the config knows, with their section, to build plausible but random files.
const KEYS: &[(&str, &str)] = &[
    ("server", "listen_address"),
    ("aws", "region"),
    ("aws", "endpoint_url"),
    ("aws", "max_attempts"),
    ("polling", "interval"),
    ("polling", "in_progress_interval"),
    ("polling", "max_requests_per_second"),
    ("polling", "burst"),
    ("polling", "jitter"),
    ("polling", "concurrency"),
    ("log", "level"),
    ("log", "format"),
    ("metrics", "image_set_detail"),
    ("metrics", "include"),
    ("sharding", "shard"),
    ("sharding", "total_shards"),
    ("persistence", "interval"),
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[a-z0-9 .:/\\[\\]()*+?-]{0,40}".prop_map(|s| format!("{s:?}")),
        "[0-9]{1,6}(ms|s|m|h|d|x)?".prop_map(|s| format!("{s:?}")),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("[\"a(\"]".to_string()),
        Just("{}".to_string()),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    let id = prop_oneof![
        "[0-9a-z]{32}",
        "[0-9a-zA-Z_-]{0,40}",
        Just("0123456789abcdef0123456789abcdef".to_string()),
    ];
    prop_oneof![
        (id.clone(), id.clone(), proptest::option::of("[0-9a-z-]{0,5}")).prop_map(
            |(d, i, v)| {
                let version = v.map(|v| format!("version_id = {v:?}\n")).unwrap_or_default();
                format!("[[image_sets]]\ndatastore_id = {d:?}\nimage_set_id = {i:?}\n{version}")
            }
        ),
        (id, any::<bool>(), value(), value()).prop_map(|(d, all, inc, int)| {
            format!(
                "[[discovery]]\ndatastore_id = {d:?}\nall_datastores = {all}\ninclude = {inc}\nsearch_interval = {int}\n"
            )
        }),
    ]
}

proptest! {
    #[test]
    fn any_bytes_as_config_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = load(&text);
    }

    #[test]
    fn plausible_configs_load_or_name_a_field(
        settings in proptest::collection::vec((0..KEYS.len(), value()), 0..8),
        entries in proptest::collection::vec(entry(), 0..4),
    ) {
        let mut text = String::new();
        for (section, _) in KEYS {
            let lines: String = settings
                .iter()
                .filter(|(k, _)| KEYS[*k].0 == *section)
                .map(|(k, v)| format!("{} = {v}\n", KEYS[*k].1))
                .collect();
            if !lines.is_empty() && !text.contains(&format!("[{section}]\n")) {
                text.push_str(&format!("[{section}]\n{lines}"));
            }
        }
        for e in &entries {
            text.push_str(e);
        }
        match load(&text) {
            Ok(config) => {
                // What loads, validates and prints (check-config's output).
                prop_assert!(config.validate().is_ok());
                prop_assert!(!config.to_toml().starts_with("# cannot render"));
            }
            Err(ConfigError::Invalid { field, .. }) => prop_assert!(!field.is_empty()),
            Err(ConfigError::Parse(message)) => {
                prop_assert!(message.contains(": "), "{message}")
            }
            Err(ConfigError::Unreadable { .. }) => prop_assert!(false, "the file exists"),
        }
    }

    #[test]
    fn any_get_image_set_answer_maps_or_is_an_invalid_response(
        ds in prop_oneof![Just(DS.to_string()), "[0-9a-zA-Z]{0,34}"],
        is in prop_oneof![Just(IS.to_string()), "[0-9a-zA-Z]{0,34}"],
        version in prop_oneof!["[0-9]{1,5}", "[0-9a-z-]{0,22}"],
        state in "[A-Z_]{0,12}",
        status in proptest::option::of("[A-Z_a-z]{0,30}"),
        tier in proptest::option::of("[A-Z_]{0,25}"),
        times in proptest::collection::vec(proptest::option::of(-1e12f64..1e12), 4),
        arn in proptest::option::of(".{0,200}"),
        message in proptest::option::of(".{0,300}"),
        forced in proptest::option::of(any::<bool>()),
    ) {
        let key = ImageSetKey {
            datastore_id: DatastoreId::parse(DS).unwrap(),
            image_set_id: ImageSetId::parse(IS).unwrap(),
        };
        let at = |t: Option<f64>| t.map(DateTime::from_secs_f64);
        let mut builder = GetImageSetOutput::builder()
            .datastore_id(ds.clone())
            .image_set_id(is.clone())
            .version_id(version.clone())
            .image_set_state(ImageSetState::from(state.as_str()))
            .set_image_set_workflow_status(status.as_deref().map(ImageSetWorkflowStatus::from))
            .set_storage_tier(tier.as_deref().map(StorageTier::from))
            .set_created_at(at(times[0]))
            .set_updated_at(at(times[1]))
            .set_deleted_at(at(times[2]))
            .set_last_accessed_at(at(times[3]))
            .set_image_set_arn(arn)
            .set_message(message);
        if let Some(f) = forced {
            builder = builder.overrides(Overrides::builder().forced(f).build());
        }
        let Ok(output) = builder.build() else { return Ok(()) };
        match snapshot_from(&key, output) {
            Ok(snapshot) => {
                prop_assert_eq!(ds.as_str(), key.datastore_id.as_str());
                prop_assert_eq!(is.as_str(), key.image_set_id.as_str());
                prop_assert_eq!(Ok(snapshot.version_id.get()), version.parse::<u64>());
                prop_assert_eq!(snapshot.state.as_str(), state.as_str());
            }
            Err(e) => prop_assert_eq!(e.kind, ErrorKind::InvalidResponse),
        }
    }
}
