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
    fn enum_check_names_field_and_choices() {
        let err = check_enum("state", "GONE", STATES).unwrap_err();
        assert!(err.contains("state"), "{err}");
        assert!(err.contains("GONE"), "{err}");
        assert!(err.contains("LOCKED"), "{err}");
    }
}
