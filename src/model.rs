//! The exporter's own view of an image set, independent of the SDK's types.
//!
//! Enumerations keep values the API adds later as their raw string (`Other`), so a new
//! workflow status is exported as-is instead of being dropped or crashing the exporter.

use serde::{Deserialize, Serialize};

use crate::ids::{DatastoreId, ImageSetId, VersionId};

macro_rules! api_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`")]
                $variant,
            )+
            /// A value this build does not know, kept verbatim.
            Other(Box<str>),
        }

        impl $name {
            /// Every value this build knows.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// Maps an API value, keeping unknown ones.
            pub fn from_api(value: &str) -> Self {
                match value {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.into()),
                }
            }

            /// The API's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(raw) => raw,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($name::from_api(&String::deserialize(d)?))
            }
        }
    };
}

api_enum!(
    /// An image set's workflow status.
    WorkflowStatus {
        Created => "CREATED",
        Copied => "COPIED",
        Copying => "COPYING",
        CopyingWithReadOnlyAccess => "COPYING_WITH_READ_ONLY_ACCESS",
        CopyFailed => "COPY_FAILED",
        Updating => "UPDATING",
        UpdatingForStudyConsistency => "UPDATING_FOR_STUDY_CONSISTENCY",
        Updated => "UPDATED",
        UpdateFailed => "UPDATE_FAILED",
        Deleting => "DELETING",
        Deleted => "DELETED",
        Importing => "IMPORTING",
        Imported => "IMPORTED",
        ImportFailed => "IMPORT_FAILED",
    }
);

api_enum!(
    /// An image set's state.
    ImageSetState {
        Active => "ACTIVE",
        Locked => "LOCKED",
        Deleted => "DELETED",
    }
);

api_enum!(
    /// An image set's storage tier.
    StorageTier {
        FrequentAccess => "FREQUENT_ACCESS",
        ArchiveInstantAccess => "ARCHIVE_INSTANT_ACCESS",
    }
);

impl WorkflowStatus {
    /// True for statuses of a workflow still running.
    pub fn is_in_progress(&self) -> bool {
        matches!(
            self,
            WorkflowStatus::Copying
                | WorkflowStatus::CopyingWithReadOnlyAccess
                | WorkflowStatus::Updating
                | WorkflowStatus::UpdatingForStudyConsistency
                | WorkflowStatus::Deleting
                | WorkflowStatus::Importing
        )
    }

    /// True for failed workflows, including `*_FAILED` values added to the API later.
    pub fn is_failed(&self) -> bool {
        self.as_str().ends_with("_FAILED")
    }
}

/// Epoch seconds, as the API reports timestamps.
pub type EpochSeconds = f64;

/// The properties of one image set as last read from GetImageSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Version the properties belong to.
    pub version_id: VersionId,
    /// Workflow status; absent when the API omitted it.
    pub workflow_status: Option<WorkflowStatus>,
    /// State.
    pub state: ImageSetState,
    /// Storage tier; absent when the API omitted it.
    pub storage_tier: Option<StorageTier>,
    /// The image set's ARN.
    pub image_set_arn: Option<String>,
    /// Whether this is the primary image set.
    pub is_primary: Option<bool>,
    /// `overrides.forced`.
    pub forced: Option<bool>,
    /// The API's explanation of a failure (logs only, never a label).
    pub message: Option<String>,
    /// When the image set was created.
    pub created_at: Option<EpochSeconds>,
    /// When its properties were last updated.
    pub updated_at: Option<EpochSeconds>,
    /// When it was deleted.
    pub deleted_at: Option<EpochSeconds>,
    /// When it was last accessed.
    pub last_accessed_at: Option<EpochSeconds>,
}

/// One image set as SearchImageSets lists it: no workflow status, no state, and the
/// DICOM tags the API returns are deliberately not carried (they are patient data).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSetSummary {
    /// The image set.
    pub image_set_id: ImageSetId,
    /// Its latest version.
    pub version: Option<VersionId>,
    /// When it was created.
    pub created_at: Option<EpochSeconds>,
    /// When any of its properties last changed.
    pub updated_at: Option<EpochSeconds>,
    /// Its storage tier.
    pub storage_tier: Option<StorageTier>,
    /// Whether it is the primary image set.
    pub is_primary: Option<bool>,
}

/// One version of an image set as ListImageSetVersions returns it (no storage tier).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    /// The version.
    pub version_id: VersionId,
    /// Its workflow status.
    pub workflow_status: Option<WorkflowStatus>,
    /// Its state.
    pub state: ImageSetState,
    /// Whether it was the primary image set.
    pub is_primary: Option<bool>,
    /// `overrides.forced`.
    pub forced: Option<bool>,
    /// The API's explanation (logs only).
    pub message: Option<String>,
    /// When it was last updated.
    pub updated_at: Option<EpochSeconds>,
    /// When it was deleted.
    pub deleted_at: Option<EpochSeconds>,
}

impl VersionRecord {
    /// `base` with this version's properties laid over it (what the image set looked like
    /// at this version, as far as the record tells).
    pub fn apply_to(&self, base: &Snapshot) -> Snapshot {
        Snapshot {
            version_id: self.version_id,
            workflow_status: self.workflow_status.clone(),
            state: self.state.clone(),
            is_primary: self.is_primary.or(base.is_primary),
            forced: self.forced,
            message: self.message.clone(),
            updated_at: self.updated_at.or(base.updated_at),
            deleted_at: self.deleted_at,
            ..base.clone()
        }
    }
}

/// A datastore as ListDatastores or GetDatastore describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreSummary {
    /// Its id.
    pub id: DatastoreId,
    /// Its name (an operator-chosen identifier, not patient data).
    pub name: String,
    /// CREATING, CREATE_FAILED, ACTIVE, DELETING or DELETED.
    pub status: String,
}

/// One page of a paginated listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Token for the next page; `None` on the last one.
    pub next_token: Option<String>,
}

/// What a SearchImageSets call asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// Only image sets updated in this inclusive window (epoch seconds).
    pub updated_between: Option<(EpochSeconds, EpochSeconds)>,
    /// Only primary or only non-primary image sets.
    pub is_primary: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_round_trip_and_unknown_ones_are_kept() {
        for s in WorkflowStatus::KNOWN {
            assert_eq!(&WorkflowStatus::from_api(s.as_str()), s);
        }
        let new = WorkflowStatus::from_api("ARCHIVING");
        assert_eq!(new, WorkflowStatus::Other("ARCHIVING".into()));
        assert_eq!(new.as_str(), "ARCHIVING");
    }

    #[test]
    fn failed_and_in_progress_classes() {
        assert!(WorkflowStatus::ImportFailed.is_failed());
        assert!(WorkflowStatus::from_api("ARCHIVE_FAILED").is_failed());
        assert!(!WorkflowStatus::Imported.is_failed());
        let in_progress: Vec<_> = WorkflowStatus::KNOWN
            .iter()
            .filter(|s| s.is_in_progress())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            in_progress,
            [
                "COPYING",
                "COPYING_WITH_READ_ONLY_ACCESS",
                "UPDATING",
                "UPDATING_FOR_STUDY_CONSISTENCY",
                "DELETING",
                "IMPORTING"
            ]
        );
    }
}
