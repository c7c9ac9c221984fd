//! Validated identifiers: datastore and image set ids (`[0-9a-z]{32}`) and version ids (`\d+`).
//!
//! The SDK does not check id patterns, so the exporter does, once, at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An id did not match its pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}: {expected}")]
pub struct InvalidId {
    /// Which kind of id.
    pub what: &'static str,
    /// The offending value (truncated when long).
    pub value: String,
    /// The expected form.
    pub expected: &'static str,
}

fn shown(value: &str) -> String {
    if value.chars().count() > 80 {
        format!("{}…", value.chars().take(80).collect::<String>())
    } else {
        value.to_string()
    }
}

fn parse_resource_id(what: &'static str, value: &str) -> Result<[u8; 32], InvalidId> {
    let bytes = value.as_bytes();
    if bytes.len() == 32
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        let mut id = [0u8; 32];
        id.copy_from_slice(bytes);
        Ok(id)
    } else {
        Err(InvalidId {
            what,
            value: shown(value),
            expected: "32 characters of 0-9 and a-z",
        })
    }
}

macro_rules! resource_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Parses and validates an id.
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                parse_resource_id($what, value).map($name)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                // Only ASCII digits and letters are ever stored.
                std::str::from_utf8(&self.0).unwrap_or_default()
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

resource_id!(
    /// A HealthImaging datastore id.
    DatastoreId, "datastore id");
resource_id!(
    /// A HealthImaging image set id.
    ImageSetId, "image set id");

/// An image set version id (`\d+`), kept as a number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct VersionId(u64);

impl VersionId {
    /// Parses a version id.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let invalid = || InvalidId {
            what: "version id",
            value: shown(value),
            expected: "a decimal number",
        };
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        value.parse().map(VersionId).map_err(|_| invalid())
    }

    /// A version id from its number.
    pub fn new(n: u64) -> Self {
        VersionId(n)
    }

    /// The version as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for VersionId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        Self::parse(s)
    }
}

impl Serialize for VersionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for VersionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Identifies one watched image set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ImageSetKey {
    /// Owning datastore.
    pub datastore_id: DatastoreId,
    /// The image set.
    pub image_set_id: ImageSetId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_are_validated() {
        let id = DatastoreId::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(id.as_str(), "0123456789abcdef0123456789abcdef");
        for bad in [
            "",
            "0123456789ABCDEF0123456789abcdef",
            "short",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcde_",
        ] {
            let err = ImageSetId::parse(bad).unwrap_err();
            assert_eq!(err.what, "image set id");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn versions_are_numbers() {
        assert_eq!(VersionId::parse("42").unwrap().get(), 42);
        for bad in ["", "-1", "1.0", "v2", "184467440737095516160"] {
            assert!(VersionId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_bad_values_are_truncated_in_errors() {
        let err = DatastoreId::parse(&"x".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 300);
    }
}
