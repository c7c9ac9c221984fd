//! The simulator's control API (`/_simulator/...`): inspect and change the world, set
//! faults, read request statistics. JSON field names follow GetImageSet's response.

use serde_json::{json, Map, Value};

use super::corruption::Corruption;
use super::scenario::{check_faults, FaultsSpec};
use super::vocab;
use super::world::{Key, Patch};

/// Parses a control-API upsert body into a patch, naming the field on error.
pub fn parse_patch(key: &Key, body: &[u8]) -> Result<Patch, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("body must be a JSON object".into());
    };
    let allow_unknown = match fields.get("allowUnknownValues") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "allowUnknownValues: expected a boolean, got {other}"
            ))
        }
    };
    let mut patch = Patch::default();
    for (name, value) in &fields {
        match name.as_str() {
            "allowUnknownValues" => {}
            "datastoreId" | "imageSetId" => {
                let expected = if name == "datastoreId" { &key.0 } else { &key.1 };
                if value.as_str() != Some(expected.as_str()) {
                    return Err(format!("{name}: {value} does not match the path ({expected})"));
                }
            }
            "imageSetWorkflowStatus" => {
                patch.workflow_status = Some(enum_field(name, value, vocab::WORKFLOW_STATUSES, allow_unknown)?)
            }
            "imageSetState" => patch.state = Some(enum_field(name, value, vocab::STATES, allow_unknown)?),
            "storageTier" => {
                patch.storage_tier = Some(enum_field(name, value, vocab::STORAGE_TIERS, allow_unknown)?)
            }
            "versionId" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| format!("versionId: expected a string of digits, got {value}"))?;
                patch.version = Some(
                    vocab::parse_version(text)
                        .ok_or_else(|| format!("versionId: `{text}` is not a decimal number"))?,
                );
            }
            "message" => {
                patch.message = Some(match value {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) if s.len() <= 2048 => Some(s.clone()),
                    Value::String(_) => return Err("message: longer than 2048 characters".into()),
                    other => return Err(format!("message: expected a string or null, got {other}")),
                })
            }
            "overrides" => {
                patch.forced = Some(match value {
                    Value::Null => None,
                    Value::Object(o) => match (o.len(), o.get("forced")) {
                        (1, Some(Value::Bool(b))) => Some(*b),
                        _ => return Err(format!("overrides: expected {{\"forced\": <bool>}}, got {value}")),
                    },
                    other => return Err(format!("overrides: expected an object or null, got {other}")),
                })
            }
            "isPrimary" => {
                patch.is_primary = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| format!("isPrimary: expected a boolean, got {value}"))?,
                )
            }
            "lastAccessedAt" => {
                patch.last_accessed_at = Some(match value {
                    Value::Null => None,
                    Value::Number(n) => Some(
                        n.as_f64()
                            .filter(|t| *t >= 0.0)
                            .ok_or_else(|| format!("lastAccessedAt: {n} is not epoch seconds"))?,
                    ),
                    other => return Err(format!("lastAccessedAt: expected epoch seconds, got {other}")),
                })
            }
            "DICOMTags" => {
                patch.dicom_tags = Some(match value {
                    Value::Null => None,
                    Value::Object(tags) => {
                        for (tag, v) in tags {
                            vocab::check_dicom_tag(tag, v).map_err(|why| format!("DICOMTags.{why}"))?;
                        }
                        Some(tags.clone())
                    }
                    other => return Err(format!("DICOMTags: expected an object or null, got {other}")),
                })
            }
            other => {
                return Err(format!(
                    "{other}: unknown or read-only field (settable: imageSetWorkflowStatus, imageSetState, \
                     storageTier, versionId, message, overrides, isPrimary, lastAccessedAt, DICOMTags, \
                     allowUnknownValues)"
                ))
            }
        }
    }
    Ok(patch)
}

/// Parses a `PUT /_simulator/datastore/{d}` body into (name, status), naming the field on error.
pub fn parse_datastore_patch(body: &[u8]) -> Result<(Option<String>, Option<String>), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("body must be a JSON object".into());
    };
    let allow_unknown = match fields.get("allowUnknownValues") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "allowUnknownValues: expected a boolean, got {other}"
            ))
        }
    };
    let (mut name, mut status) = (None, None);
    for (field, value) in &fields {
        match field.as_str() {
            "allowUnknownValues" => {}
            "datastoreStatus" => {
                status = Some(enum_field(field, value, vocab::DATASTORE_STATUSES, allow_unknown)?)
            }
            "datastoreName" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| format!("datastoreName: expected a string, got {value}"))?;
                if !vocab::is_datastore_name(text) {
                    return Err(format!(
                        "datastoreName: `{text}` does not match [A-Za-z0-9._/#-]+ (1 to 256 characters)"
                    ));
                }
                name = Some(text.to_string());
            }
            other => {
                return Err(format!(
                    "{other}: unknown or read-only field (settable: datastoreStatus, datastoreName, allowUnknownValues)"
                ))
            }
        }
    }
    Ok((name, status))
}

fn enum_field(
    name: &str,
    value: &Value,
    allowed: &[&str],
    allow_unknown: bool,
) -> Result<String, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{name}: expected a string, got {value}"))?;
    if allow_unknown && vocab::is_enum_like(text) {
        return Ok(text.to_string());
    }
    vocab::check_enum(name, text, allowed)?;
    Ok(text.to_string())
}

/// Parses a `PUT /_simulator/faults` body (replaces all faults; absent fields are off).
pub fn parse_faults(body: &[u8]) -> Result<FaultsSpec, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("body must be a JSON object".into());
    };
    let mut faults = FaultsSpec::default();
    for (name, value) in &fields {
        match name.as_str() {
            "throttleRatio" | "errorRatio" | "accessDeniedRatio" | "corruptionRatio" => {
                if name == "corruptionRatio" && value.is_null() {
                    continue;
                }
                let ratio = value.as_f64().ok_or_else(|| {
                    format!("{name}: expected a number between 0 and 1, got {value}")
                })?;
                match name.as_str() {
                    "throttleRatio" => faults.throttle_ratio = ratio,
                    "errorRatio" => faults.error_ratio = ratio,
                    "accessDeniedRatio" => faults.access_denied_ratio = ratio,
                    _ => faults.corruption_ratio = Some(ratio),
                }
            }
            "corruption" => {
                faults.corruption = match value {
                    Value::Null => None,
                    Value::String(s) => {
                        Some(Corruption::parse(s).map_err(|why| format!("corruption: {why}"))?)
                    }
                    other => {
                        return Err(format!(
                            "corruption: expected a mode name like \"truncated\", got {other}"
                        ))
                    }
                }
            }
            "latency" => {
                faults.latency = match value {
                    Value::Null => None,
                    Value::String(s) => Some(
                        humantime::parse_duration(s)
                            .map_err(|e| format!("latency: `{s}` is not a duration: {e}"))?,
                    ),
                    other => {
                        return Err(format!(
                            "latency: expected a duration string like \"500ms\", got {other}"
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "{other}: unknown field (known: throttleRatio, errorRatio, accessDeniedRatio, \
                     latency, corruption, corruptionRatio)"
                ))
            }
        }
    }
    check_faults("faults", &faults).map_err(|(field, why)| {
        let snake = field.rsplit('.').next().unwrap_or(&field);
        format!("{}: {why}", camel_case(snake))
    })?;
    Ok(faults)
}

/// `corruption_ratio` → `corruptionRatio`.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// The faults as the control API shows them.
pub fn faults_json(faults: &FaultsSpec) -> Value {
    let corruption = faults.corruption();
    json!({
        "throttleRatio": faults.throttle_ratio,
        "errorRatio": faults.error_ratio,
        "accessDeniedRatio": faults.access_denied_ratio,
        "latency": faults.latency.map(|d| humantime::format_duration(d).to_string()),
        "corruption": corruption.map(|(mode, _)| mode.as_str()),
        "corruptionRatio": corruption.map(|(_, ratio)| ratio),
    })
}

/// Request statistics as the control API shows them.
pub fn stats_json<'a>(counts: impl Iterator<Item = (&'a (String, String), &'a u64)>) -> Value {
    let mut requests: Map<String, Value> = Map::new();
    let mut total = 0u64;
    for ((operation, outcome), count) in counts {
        total += count;
        let entry = requests
            .entry(operation.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(outcomes) = entry {
            outcomes.insert(outcome.clone(), json!(count));
        }
    }
    json!({ "requests": requests, "total": total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        (
            "0123456789abcdef0123456789abcdef".into(),
            "fedcba9876543210fedcba9876543210".into(),
        )
    }

    #[test]
    fn patch_fields_are_parsed() {
        let p = parse_patch(
            &key(),
            br#"{"imageSetWorkflowStatus":"IMPORT_FAILED","message":"bad","versionId":"3","overrides":{"forced":true}}"#,
        )
        .unwrap();
        assert_eq!(p.workflow_status.as_deref(), Some("IMPORT_FAILED"));
        assert_eq!(p.message, Some(Some("bad".into())));
        assert_eq!(p.version, Some(3));
        assert_eq!(p.forced, Some(Some(true)));
    }

    #[test]
    fn bad_patch_fields_are_named() {
        for (body, field) in [
            (r#"{"imageSetState":"GONE"}"#, "imageSetState"),
            (r#"{"versionId":2}"#, "versionId"),
            (r#"{"storageTier":"COLD"}"#, "storageTier"),
            (r#"{"colour":"blue"}"#, "colour"),
            (r#"{"isPrimary":"yes"}"#, "isPrimary"),
            (
                r#"{"datastoreId":"ffffffffffffffffffffffffffffffff"}"#,
                "datastoreId",
            ),
        ] {
            let err = parse_patch(&key(), body.as_bytes()).unwrap_err();
            assert!(err.starts_with(field), "{body}: {err}");
        }
    }

    #[test]
    fn unknown_enum_values_need_the_opt_in() {
        let body = br#"{"imageSetWorkflowStatus":"ARCHIVING","allowUnknownValues":true}"#;
        assert_eq!(
            parse_patch(&key(), body)
                .unwrap()
                .workflow_status
                .as_deref(),
            Some("ARCHIVING")
        );
        assert!(parse_patch(&key(), br#"{"imageSetWorkflowStatus":"ARCHIVING"}"#).is_err());
    }

    #[test]
    fn dicom_tags_are_checked_against_the_model() {
        let p = parse_patch(
            &key(),
            br#"{"DICOMTags":{"DICOMPatientId":"P1","DICOMSeriesNumber":2}}"#,
        )
        .unwrap();
        assert_eq!(p.dicom_tags.unwrap().unwrap().len(), 2);
        assert_eq!(
            parse_patch(&key(), br#"{"DICOMTags":null}"#)
                .unwrap()
                .dicom_tags,
            Some(None)
        );
        for body in [
            r#"{"DICOMTags":{"PatientId":"P1"}}"#,
            r#"{"DICOMTags":"P1"}"#,
        ] {
            assert!(
                parse_patch(&key(), body.as_bytes())
                    .unwrap_err()
                    .starts_with("DICOMTags"),
                "{body}"
            );
        }
    }

    #[test]
    fn datastore_patches_are_validated() {
        assert_eq!(
            parse_datastore_patch(br#"{"datastoreStatus":"DELETING","datastoreName":"a-b"}"#),
            Ok((Some("a-b".into()), Some("DELETING".into())))
        );
        for (body, field) in [
            (r#"{"datastoreStatus":"GONE"}"#, "datastoreStatus"),
            (r#"{"datastoreName":"a b"}"#, "datastoreName"),
            (r#"{"status":"ACTIVE"}"#, "status"),
        ] {
            assert!(
                parse_datastore_patch(body.as_bytes())
                    .unwrap_err()
                    .starts_with(field),
                "{body}"
            );
        }
        assert!(parse_datastore_patch(
            br#"{"datastoreStatus":"ARCHIVED","allowUnknownValues":true}"#
        )
        .is_ok());
    }

    #[test]
    fn faults_are_validated() {
        let f = parse_faults(br#"{"throttleRatio":0.5,"latency":"200ms"}"#).unwrap();
        assert_eq!(f.throttle_ratio, 0.5);
        assert_eq!(f.latency, Some(std::time::Duration::from_millis(200)));
        assert!(parse_faults(br#"{"errorRatio":1.5}"#)
            .unwrap_err()
            .starts_with("errorRatio"));
        assert!(parse_faults(br#"{"latency":"soon"}"#)
            .unwrap_err()
            .starts_with("latency"));
    }

    #[test]
    fn corruption_faults_are_validated_and_shown() {
        let f = parse_faults(br#"{"corruption":"huge_body","corruptionRatio":0.5}"#).unwrap();
        assert_eq!(f.corruption(), Some((Corruption::HugeBody, 0.5)));
        let shown = faults_json(&f);
        assert_eq!(shown["corruption"], "huge_body");
        assert_eq!(shown["corruptionRatio"], 0.5);
        let f = parse_faults(br#"{"corruption":"reset"}"#).unwrap();
        assert_eq!(faults_json(&f)["corruptionRatio"], 1.0);
        let off = faults_json(&parse_faults(b"{}").unwrap());
        assert!(off["corruption"].is_null() && off["corruptionRatio"].is_null());
        for (body, start) in [
            (
                r#"{"corruption":"gzip"}"#,
                "corruption: `gzip` is not one of truncated",
            ),
            (r#"{"corruption":3}"#, "corruption: expected a mode name"),
            (
                r#"{"corruption":"reset","corruptionRatio":-0.1}"#,
                "corruptionRatio: -0.1 is not between 0 and 1",
            ),
            (
                r#"{"corruptionRatio":0.5}"#,
                "corruptionRatio: set without corruption",
            ),
            (
                r#"{"corruptionRatio":"all"}"#,
                "corruptionRatio: expected a number",
            ),
            (
                r#"{"accessDeniedRatio":7}"#,
                "accessDeniedRatio: 7 is not between 0 and 1",
            ),
        ] {
            let err = parse_faults(body.as_bytes()).unwrap_err();
            assert!(err.starts_with(start), "{body}: {err}");
        }
    }
}
