//! The listing operations' inputs: SearchImageSets' search criteria (the request body,
//! validated as the service does), `maxResults`, and the opaque `nextToken`s.
//!
//! Tokens are cursors, not offsets: a search token holds the last returned entry's sort
//! key and id, so image sets that do not change during a listing are never skipped or
//! repeated, whatever else changes. They are bound to the criteria they were made for.

use serde_json::{json, Map, Value};

use super::vocab;
use super::world::{id_bytes, to_millis, DicomTags, ImageSet, IndexEntry, SortField};

/// Results per page when `maxResults` is absent, and the most allowed.
pub const MAX_RESULTS: usize = 50;

/// One search filter, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `createdAt` or `updatedAt` within `[lo, hi]` milliseconds (EQUAL: `lo == hi`).
    Time {
        /// The timestamp compared.
        field: SortField,
        /// Lower bound, inclusive.
        lo: i64,
        /// Upper bound, inclusive.
        hi: i64,
    },
    /// `isPrimary` EQUAL.
    Primary(bool),
    /// A DICOM tag EQUAL.
    Tag {
        /// The tag, e.g. `DICOMPatientId`.
        name: &'static str,
        /// The value it must have.
        value: String,
    },
}

/// Validated `SearchCriteria`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Criteria {
    /// Filters, all of which must match (0 to 2).
    pub filters: Vec<Filter>,
    /// The requested order; `updatedAt` newest first when absent.
    pub sort: Option<(SortField, bool)>,
}

fn field_name(field: SortField) -> &'static str {
    match field {
        SortField::UpdatedAt => "updatedAt",
        SortField::CreatedAt => "createdAt",
    }
}

impl Criteria {
    /// The sort field and whether it is descending.
    pub fn order(&self) -> (SortField, bool) {
        self.sort.unwrap_or((SortField::UpdatedAt, true))
    }

    /// The inclusive millisecond range of the sort field that the filters allow.
    pub fn range(&self) -> (i64, i64) {
        let (sort_field, _) = self.order();
        self.filters
            .iter()
            .fold((i64::MIN, i64::MAX), |(lo, hi), f| match f {
                Filter::Time {
                    field,
                    lo: flo,
                    hi: fhi,
                } if *field == sort_field => (lo.max(*flo), hi.min(*fhi)),
                _ => (lo, hi),
            })
    }

    /// True when the image set's latest version passes every filter.
    pub fn matches(&self, set: &ImageSet) -> bool {
        let latest = set.latest();
        self.filters.iter().all(|f| match f {
            Filter::Time { field, lo, hi } => {
                let t = to_millis(match field {
                    SortField::UpdatedAt => latest.updated_at,
                    SortField::CreatedAt => latest.created_at,
                });
                (*lo..=*hi).contains(&t)
            }
            Filter::Primary(p) => latest.is_primary == *p,
            Filter::Tag { name, value } => match &set.tags {
                DicomTags::None => false,
                tags => tags.has(name, value),
            },
        })
    }

    /// The index entry a listing in this order continues after, for `set` with `id`.
    pub fn cursor_of(&self, id: &str, set: &ImageSet) -> IndexEntry {
        let latest = set.latest();
        let t = match self.order().0 {
            SortField::UpdatedAt => latest.updated_at,
            SortField::CreatedAt => latest.created_at,
        };
        (to_millis(t), id_bytes(id))
    }

    /// The response's `sort` member: the requested sort, echoed.
    pub fn sort_json(&self) -> Option<Value> {
        self.sort.map(|(field, descending)| {
            json!({
                "sortOrder": if descending { "DESC" } else { "ASC" },
                "sortField": field_name(field),
            })
        })
    }

    fn fingerprint(&self) -> u64 {
        fnv1a(format!("{:?}", (&self.filters, &self.sort)).as_bytes())
    }

    /// The token of a page that ended at `cursor`.
    pub fn token(&self, cursor: IndexEntry) -> String {
        let id = String::from_utf8_lossy(&cursor.1);
        format!("s1.{:016x}.{}.{id}", self.fingerprint(), cursor.0)
    }

    /// The cursor in `token`, which must have been made for these criteria.
    pub fn parse_token(&self, token: &str) -> Result<IndexEntry, String> {
        let invalid = || "Invalid nextToken: not a token of this search".to_string();
        let mut parts = token.split('.');
        let (Some("s1"), Some(fp), Some(ms), Some(id), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid());
        };
        if fp != format!("{:016x}", self.fingerprint()) || !vocab::is_resource_id(id) {
            return Err(invalid());
        }
        let ms: i64 = ms.parse().map_err(|_| invalid())?;
        Ok((ms, id_bytes(id)))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The token of a ListImageSetVersions page that ended at version `number`.
pub fn version_token(number: u64) -> String {
    format!("v1.{number}")
}

/// The version a ListImageSetVersions token continues below.
pub fn parse_version_token(token: &str) -> Result<u64, String> {
    token
        .strip_prefix("v1.")
        .and_then(vocab::parse_version)
        .ok_or_else(|| "Invalid nextToken: not a token of ListImageSetVersions".to_string())
}

/// The token of a ListDatastores page that ended at datastore `id`.
pub fn datastore_token(id: &str) -> String {
    format!("d1.{id}")
}

/// The datastore id a ListDatastores token continues after.
pub fn parse_datastore_token(token: &str) -> Result<String, String> {
    token
        .strip_prefix("d1.")
        .filter(|id| vocab::is_resource_id(id))
        .map(str::to_string)
        .ok_or_else(|| "Invalid nextToken: not a token of ListDatastores".to_string())
}

/// `maxResults` from the query: 1 to 50, 50 when absent.
pub fn parse_max_results(value: Option<&str>) -> Result<usize, String> {
    let Some(text) = value else {
        return Ok(MAX_RESULTS);
    };
    match text.parse::<i64>() {
        Ok(n) if (1..=MAX_RESULTS as i64).contains(&n) => Ok(n as usize),
        Ok(_) => Err(format!(
            "1 validation error detected: Value '{text}' at 'maxResults' failed to satisfy constraint: \
             Member must have value between 1 and {MAX_RESULTS}"
        )),
        Err(_) => Err(format!(
            "1 validation error detected: Value '{text}' at 'maxResults' failed to satisfy constraint: \
             Member must be an integer"
        )),
    }
}

/// Parses SearchImageSets' body, the `SearchCriteria` (`{}` or empty: everything).
pub fn parse_criteria(body: &[u8]) -> Result<Criteria, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Criteria::default());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("searchCriteria: the body is not valid JSON: {e}"))?;
    let fields = object(&value, "searchCriteria")?;
    let mut criteria = Criteria::default();
    for (name, value) in fields {
        match name.as_str() {
            "filters" if value.is_null() => {}
            "filters" => {
                let filters = value.as_array().ok_or_else(|| {
                    format!("searchCriteria.filters: expected a list, got {value}")
                })?;
                if !(1..=2).contains(&filters.len()) {
                    return Err(format!(
                        "searchCriteria.filters: must have 1 or 2 filters, got {}",
                        filters.len()
                    ));
                }
                for (n, filter) in filters.iter().enumerate() {
                    criteria.filters.push(parse_filter(
                        filter,
                        &format!("searchCriteria.filters[{n}]"),
                    )?);
                }
            }
            "sort" if value.is_null() => {}
            "sort" => criteria.sort = Some(parse_sort(value)?),
            other => {
                return Err(format!(
                    "searchCriteria.{other}: unknown member (SearchCriteria has filters and sort)"
                ))
            }
        }
    }
    Ok(criteria)
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object, got {value}"))
}

/// One `SearchByAttributeValue`: a union with exactly one member.
#[derive(Debug, Clone, PartialEq)]
enum Attribute {
    Time(SortField, i64),
    Primary(bool),
    Tag(&'static str, String),
}

fn parse_attribute(value: &Value, at: &str) -> Result<Attribute, String> {
    let members = object(value, at)?;
    let mut entries = members.iter();
    let (Some((name, v)), None) = (entries.next(), entries.next()) else {
        return Err(format!(
            "{at}: a SearchByAttributeValue must set exactly one member, got {}",
            members.len()
        ));
    };
    let time = |field| {
        let secs = v
            .as_f64()
            .filter(|t| t.is_finite())
            .ok_or_else(|| format!("{at}.{name}: expected epoch seconds as a number, got {v}"))?;
        Ok(Attribute::Time(field, to_millis(secs)))
    };
    match name.as_str() {
        "updatedAt" => time(SortField::UpdatedAt),
        "createdAt" => time(SortField::CreatedAt),
        "isPrimary" => v
            .as_bool()
            .map(Attribute::Primary)
            .ok_or_else(|| format!("{at}.isPrimary: expected a boolean, got {v}")),
        "DICOMStudyDateAndTime" => Err(format!(
            "{at}.DICOMStudyDateAndTime: not supported by the simulator (use createdAt or updatedAt)"
        )),
        tag => {
            let Some(canonical) = vocab::SEARCHABLE_TAGS.iter().find(|t| **t == tag) else {
                return Err(format!(
                    "{at}.{tag}: unknown member (SearchByAttributeValue has DICOMPatientId, \
                     DICOMAccessionNumber, DICOMStudyId, DICOMStudyInstanceUID, \
                     DICOMSeriesInstanceUID, createdAt, updatedAt, DICOMStudyDateAndTime, isPrimary)"
                ));
            };
            let text = v
                .as_str()
                .ok_or_else(|| format!("{at}.{tag}: expected a string, got {v}"))?;
            vocab::check_dicom_tag(canonical, v).map_err(|why| format!("{at}.{why}"))?;
            Ok(Attribute::Tag(canonical, text.to_string()))
        }
    }
}

fn parse_filter(value: &Value, at: &str) -> Result<Filter, String> {
    let members = object(value, at)?;
    if let Some(other) = members.keys().find(|k| *k != "values" && *k != "operator") {
        return Err(format!(
            "{at}.{other}: unknown member (SearchFilter has values and operator)"
        ));
    }
    let operator = members
        .get("operator")
        .ok_or_else(|| format!("{at}.operator: required"))?;
    let values = members
        .get("values")
        .ok_or_else(|| format!("{at}.values: required"))?
        .as_array()
        .ok_or_else(|| format!("{at}.values: expected a list"))?;
    if !(1..=2).contains(&values.len()) {
        return Err(format!(
            "{at}.values: must have 1 or 2 values, got {}",
            values.len()
        ));
    }
    let attributes = values
        .iter()
        .enumerate()
        .map(|(n, v)| parse_attribute(v, &format!("{at}.values[{n}]")))
        .collect::<Result<Vec<_>, _>>()?;
    match (operator.as_str(), attributes.as_slice()) {
        (Some("EQUAL"), [one]) => Ok(match one.clone() {
            Attribute::Time(field, t) => Filter::Time {
                field,
                lo: t,
                hi: t,
            },
            Attribute::Primary(p) => Filter::Primary(p),
            Attribute::Tag(name, value) => Filter::Tag { name, value },
        }),
        (Some("EQUAL"), _) => Err(format!(
            "{at}: operator EQUAL takes exactly 1 value, got {}",
            attributes.len()
        )),
        (Some("BETWEEN"), [Attribute::Time(a, lo), Attribute::Time(b, hi)]) if a == b => {
            if lo > hi {
                return Err(format!(
                    "{at}: BETWEEN takes (lowerBound, upperBound); the lower bound is after the upper bound"
                ));
            }
            Ok(Filter::Time {
                field: *a,
                lo: *lo,
                hi: *hi,
            })
        }
        (Some("BETWEEN"), [_, _]) => Err(format!(
            "{at}: operator BETWEEN takes two values of the same attribute, createdAt or updatedAt"
        )),
        (Some("BETWEEN"), _) => Err(format!(
            "{at}: operator BETWEEN takes exactly 2 values, got {}",
            attributes.len()
        )),
        _ => Err(format!(
            "{at}.operator: expected EQUAL or BETWEEN, got {operator}"
        )),
    }
}

fn parse_sort(value: &Value) -> Result<(SortField, bool), String> {
    let at = "searchCriteria.sort";
    let members = object(value, at)?;
    if let Some(other) = members
        .keys()
        .find(|k| *k != "sortOrder" && *k != "sortField")
    {
        return Err(format!(
            "{at}.{other}: unknown member (Sort has sortOrder and sortField)"
        ));
    }
    let descending = match members.get("sortOrder").and_then(Value::as_str) {
        Some("ASC") => false,
        Some("DESC") => true,
        _ => {
            return Err(format!(
                "{at}.sortOrder: required, ASC or DESC, got {}",
                members.get("sortOrder").unwrap_or(&Value::Null)
            ))
        }
    };
    let field = match members.get("sortField").and_then(Value::as_str) {
        Some("updatedAt") => SortField::UpdatedAt,
        Some("createdAt") => SortField::CreatedAt,
        Some("DICOMStudyDateAndTime") => {
            return Err(format!(
                "{at}.sortField: DICOMStudyDateAndTime is not supported by the simulator (use updatedAt or createdAt)"
            ))
        }
        _ => {
            return Err(format!(
                "{at}.sortField: required, updatedAt, createdAt or DICOMStudyDateAndTime, got {}",
                members.get("sortField").unwrap_or(&Value::Null)
            ))
        }
    };
    Ok((field, descending))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_criteria(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn empty_criteria_mean_everything_newest_first() {
        for body in ["", "  ", "{}"] {
            let c = parse_criteria(body.as_bytes()).unwrap();
            assert_eq!(c, Criteria::default());
            assert_eq!(c.order(), (SortField::UpdatedAt, true));
            assert_eq!(c.range(), (i64::MIN, i64::MAX));
            assert!(c.sort_json().is_none());
        }
    }

    #[test]
    fn between_and_sort_parse_into_a_range_and_an_order() {
        let c = parse_criteria(
            br#"{"filters":[{"values":[{"updatedAt":1700000000},{"updatedAt":1700000600.5}],"operator":"BETWEEN"}],
                "sort":{"sortOrder":"ASC","sortField":"updatedAt"}}"#,
        )
        .unwrap();
        assert_eq!(c.order(), (SortField::UpdatedAt, false));
        assert_eq!(c.range(), (1_700_000_000_000, 1_700_000_600_500));
        assert_eq!(
            c.sort_json().unwrap(),
            json!({"sortOrder": "ASC", "sortField": "updatedAt"})
        );
        let by_created = parse_criteria(
            br#"{"filters":[{"values":[{"createdAt":1},{"createdAt":2}],"operator":"BETWEEN"}]}"#,
        )
        .unwrap();
        assert_eq!(
            by_created.range(),
            (i64::MIN, i64::MAX),
            "a createdAt filter does not narrow the updatedAt index"
        );
    }

    #[test]
    fn equal_filters_parse() {
        let c = parse_criteria(
            br#"{"filters":[{"values":[{"DICOMPatientId":"P1"}],"operator":"EQUAL"},
                            {"values":[{"isPrimary":true}],"operator":"EQUAL"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.filters,
            [
                Filter::Tag {
                    name: "DICOMPatientId",
                    value: "P1".into()
                },
                Filter::Primary(true)
            ]
        );
    }

    #[test]
    fn invalid_criteria_are_named() {
        for (body, expect) in [
            ("[]", "searchCriteria: expected an object"),
            ("{", "not valid JSON"),
            (
                r#"{"searchCriteria":{}}"#,
                "searchCriteria.searchCriteria: unknown member",
            ),
            (r#"{"filters":[]}"#, "1 or 2 filters"),
            (
                r#"{"filters":[{"values":[{"isPrimary":true}],"operator":"EQUAL"},{"values":[{"isPrimary":true}],"operator":"EQUAL"},{"values":[{"isPrimary":true}],"operator":"EQUAL"}]}"#,
                "1 or 2 filters",
            ),
            (
                r#"{"filters":[{"values":[{"updatedAt":1},{"updatedAt":2}],"operator":"EQUAL"}]}"#,
                "EQUAL takes exactly 1 value",
            ),
            (
                r#"{"filters":[{"values":[{"updatedAt":1}],"operator":"BETWEEN"}]}"#,
                "BETWEEN takes exactly 2 values",
            ),
            (
                r#"{"filters":[{"values":[{"updatedAt":1},{"createdAt":2}],"operator":"BETWEEN"}]}"#,
                "same attribute",
            ),
            (
                r#"{"filters":[{"values":[{"updatedAt":5},{"updatedAt":2}],"operator":"BETWEEN"}]}"#,
                "lower bound",
            ),
            (
                r#"{"filters":[{"values":[{"updatedAt":"2023-11-14T22:13:20Z"}],"operator":"EQUAL"}]}"#,
                "filters[0].values[0].updatedAt: expected epoch seconds",
            ),
            (
                r#"{"filters":[{"values":[{"updatedAt":1,"createdAt":1}],"operator":"EQUAL"}]}"#,
                "exactly one member",
            ),
            (
                r#"{"filters":[{"values":[{"DICOMPatientName":"X"}],"operator":"EQUAL"}]}"#,
                "DICOMPatientName: unknown member",
            ),
            (
                r#"{"filters":[{"values":[{"isPrimary":true}],"operator":"LIKE"}]}"#,
                "expected EQUAL or BETWEEN",
            ),
            (
                r#"{"filters":[{"values":[{"DICOMStudyInstanceUID":"1.2.a"}],"operator":"EQUAL"}]}"#,
                "DICOMStudyInstanceUID",
            ),
            (
                r#"{"sort":{"sortOrder":"UP","sortField":"updatedAt"}}"#,
                "sortOrder",
            ),
            (r#"{"sort":{"sortOrder":"ASC"}}"#, "sortField: required"),
            (
                r#"{"sort":{"sortOrder":"ASC","sortField":"DICOMStudyDateAndTime"}}"#,
                "not supported",
            ),
        ] {
            let e = err(body);
            assert!(e.contains(expect), "{body}: `{e}` lacks `{expect}`");
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let c = parse_criteria(br#"{"sort":{"sortOrder":"ASC","sortField":"createdAt"}}"#).unwrap();
        let cursor = (-5, id_bytes("0123456789abcdef0123456789abcdef"));
        let token = c.token(cursor);
        assert!(token.is_ascii());
        assert_eq!(c.parse_token(&token), Ok(cursor));
        assert!(
            Criteria::default().parse_token(&token).is_err(),
            "other criteria"
        );
        for bad in [
            "",
            "s1",
            "garbage",
            &token[..token.len() - 1],
            &format!("{token}.x"),
        ] {
            assert!(c.parse_token(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_version_token(&version_token(7)), Ok(7));
        assert!(parse_version_token("v1.x").is_err());
        let ds = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_datastore_token(&datastore_token(ds)).unwrap(), ds);
        assert!(parse_datastore_token("d1.short").is_err());
    }

    #[test]
    fn max_results_is_one_to_fifty() {
        assert_eq!(parse_max_results(None), Ok(50));
        assert_eq!(parse_max_results(Some("1")), Ok(1));
        assert_eq!(parse_max_results(Some("50")), Ok(50));
        for bad in ["0", "51", "-1", "x", ""] {
            assert!(parse_max_results(Some(bad))
                .unwrap_err()
                .contains("maxResults"));
        }
    }
}
