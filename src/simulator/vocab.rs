//! The simulator's own copy of the API's value sets and id patterns.
//!
//! Deliberately independent of the exporter's types: a mistake in one side's idea of the
//! wire format must not be mirrored by the other.

/// Workflow statuses of API version 2023-07-19.
pub const WORKFLOW_STATUSES: &[&str] = &[
    "CREATED",
    "COPIED",
    "COPYING",
    "COPYING_WITH_READ_ONLY_ACCESS",
    "COPY_FAILED",
    "UPDATING",
    "UPDATING_FOR_STUDY_CONSISTENCY",
    "UPDATED",
    "UPDATE_FAILED",
    "DELETING",
    "DELETED",
    "IMPORTING",
    "IMPORTED",
    "IMPORT_FAILED",
];

/// Image set states.
pub const STATES: &[&str] = &["ACTIVE", "LOCKED", "DELETED"];

/// Storage tiers.
pub const STORAGE_TIERS: &[&str] = &["FREQUENT_ACCESS", "ARCHIVE_INSTANT_ACCESS"];

/// Datastore statuses.
pub const DATASTORE_STATUSES: &[&str] =
    &["CREATING", "CREATE_FAILED", "ACTIVE", "DELETING", "DELETED"];

/// How a DICOM tag's value is constrained in the model's `DICOMTags` shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// A string of at most this many characters.
    Text(usize),
    /// A UID: digits and dots (`[0-9.]+`), at most 512 characters.
    Uid,
    /// An integer within the bounds.
    Integer(i64, i64),
}

/// The members of the model's `DICOMTags` shape, with their constraints.
pub const DICOM_TAGS: &[(&str, TagKind)] = &[
    ("DICOMPatientId", TagKind::Text(512)),
    ("DICOMPatientName", TagKind::Text(512)),
    ("DICOMPatientBirthDate", TagKind::Text(36)),
    ("DICOMPatientSex", TagKind::Text(16)),
    ("DICOMStudyInstanceUID", TagKind::Uid),
    ("DICOMStudyId", TagKind::Text(512)),
    ("DICOMStudyDescription", TagKind::Text(512)),
    (
        "DICOMNumberOfStudyRelatedSeries",
        TagKind::Integer(0, 1_000_000),
    ),
    (
        "DICOMNumberOfStudyRelatedInstances",
        TagKind::Integer(0, 1_000_000),
    ),
    ("DICOMAccessionNumber", TagKind::Text(512)),
    ("DICOMSeriesInstanceUID", TagKind::Uid),
    ("DICOMSeriesModality", TagKind::Text(32)),
    ("DICOMSeriesBodyPart", TagKind::Text(128)),
    (
        "DICOMSeriesNumber",
        TagKind::Integer(-2_147_483_648, 2_147_483_647),
    ),
    ("DICOMStudyDate", TagKind::Text(36)),
    ("DICOMStudyTime", TagKind::Text(56)),
];

/// The DICOM tags SearchImageSets can match with `EQUAL` (members of `SearchByAttributeValue`).
pub const SEARCHABLE_TAGS: &[&str] = &[
    "DICOMPatientId",
    "DICOMAccessionNumber",
    "DICOMStudyId",
    "DICOMStudyInstanceUID",
    "DICOMSeriesInstanceUID",
];

/// Checks one DICOM tag against the model; returns the canonical tag name.
pub fn check_dicom_tag(name: &str, value: &serde_json::Value) -> Result<&'static str, String> {
    let Some((canonical, kind)) = DICOM_TAGS.iter().find(|(n, _)| *n == name) else {
        return Err(format!(
            "{name}: unknown DICOM tag (known: {})",
            DICOM_TAGS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    match (kind, value) {
        (TagKind::Text(max), serde_json::Value::String(s)) if s.chars().count() <= *max => {}
        (TagKind::Text(max), _) => {
            return Err(format!(
                "{name}: expected a string of at most {max} characters, got {value}"
            ))
        }
        (TagKind::Uid, serde_json::Value::String(s))
            if !s.is_empty()
                && s.len() <= 512
                && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {}
        (TagKind::Uid, _) => {
            return Err(format!(
                "{name}: expected a UID of digits and dots, got {value}"
            ))
        }
        (TagKind::Integer(lo, hi), serde_json::Value::Number(n))
            if n.as_i64().is_some_and(|n| (*lo..=*hi).contains(&n)) => {}
        (TagKind::Integer(lo, hi), _) => {
            return Err(format!(
                "{name}: expected an integer between {lo} and {hi}, got {value}"
            ))
        }
    }
    Ok(canonical)
}

/// The static copy of a known enum value, or an owned copy of an unknown one.
pub fn intern(value: &str) -> std::borrow::Cow<'static, str> {
    WORKFLOW_STATUSES
        .iter()
        .chain(STATES)
        .chain(STORAGE_TIERS)
        .chain(DATASTORE_STATUSES)
        .find(|known| **known == value)
        .map_or_else(|| value.to_string().into(), |known| (*known).into())
}

/// True when `s` is a valid datastore name (`[A-Za-z0-9._/#-]+`, 1 to 256 characters).
pub fn is_datastore_name(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'#' | b'-'))
}

/// True when `s` matches the model's `[0-9a-z]{32}` (datastore and image set ids).
pub fn is_resource_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Parses a version id (`\d+`) into a number, rejecting empty and overflowing values.
pub fn parse_version(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Checks `value` against `allowed`, naming the field and the choices on failure.
pub fn check_enum(field: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{field}: unknown value `{value}`, expected one of {}",
            allowed.join(", ")
        ))
    }
}

/// True for an upper-case identifier such as a value the API may add in the future.
pub fn is_enum_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_follow_the_model_pattern() {
        assert!(is_resource_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_resource_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_resource_id("0123456789abcdef0123456789abcde"));
        assert!(!is_resource_id("0123456789abcdef0123456789abcdef0"));
        assert!(!is_resource_id("0123456789abcdef0123456789abcde-"));
    }

    #[test]
    fn versions_are_decimal_numbers() {
        assert_eq!(parse_version("1"), Some(1));
        assert_eq!(parse_version("007"), Some(7));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("-1"), None);
        assert_eq!(parse_version("1a"), None);
        assert_eq!(parse_version("99999999999999999999999"), None);
    }

    #[test]
    fn dicom_tags_follow_the_model() {
        use serde_json::json;
        assert_eq!(
            check_dicom_tag("DICOMPatientId", &json!("P1")),
            Ok("DICOMPatientId")
        );
        assert!(check_dicom_tag("DICOMPatientID", &json!("P1"))
            .unwrap_err()
            .contains("unknown"));
        assert!(check_dicom_tag("DICOMStudyInstanceUID", &json!("1.2.x")).is_err());
        assert!(check_dicom_tag("DICOMSeriesNumber", &json!(3)).is_ok());
        assert!(check_dicom_tag("DICOMSeriesNumber", &json!("3")).is_err());
        assert!(check_dicom_tag("DICOMPatientSex", &json!("x".repeat(17))).is_err());
    }

    #[test]
    fn interned_values_borrow_known_ones() {
        assert!(matches!(intern("IMPORTED"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(intern("ARCHIVING"), std::borrow::Cow::Owned(_)));
        assert!(is_datastore_name("radiology-2/a#b.c_d"));
        assert!(!is_datastore_name("has space"));
        assert!(!is_datastore_name(""));
    }

    #[test]
    fn enum_check_names_field_and_choices() {
        let err = check_enum("state", "GONE", STATES).unwrap_err();
        assert!(err.contains("state"), "{err}");
        assert!(err.contains("GONE"), "{err}");
        assert!(err.contains("LOCKED"), "{err}");
    }
}
