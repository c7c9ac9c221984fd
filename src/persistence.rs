//! The state file: the store's last snapshots, status times and transition counters,
//! written atomically so a restart neither invents transitions nor forgets one.
//!
//! Format (JSON, documented in README "Operations"): `format` = "healthimaging-exporter-state",
//! `version` = [`FORMAT_VERSION`], `written_at` (epoch seconds), `image_sets` and the two
//! transition counter tables. It never holds credentials, DICOM data or the API's free-text
//! `message` (which may quote DICOM values).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::{DatastoreId, ImageSetId, ImageSetKey};
use crate::model::{EpochSeconds, Snapshot};
use crate::store::{Entry, Origin, State, TransitionKey};

/// Identifies the file's content.
pub const FORMAT: &str = "healthimaging-exporter-state";
/// Bumped whenever the layout changes incompatibly; other versions are ignored (with a
/// warning), never misread.
pub const FORMAT_VERSION: u32 = 1;

/// One image set as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedImageSet {
    /// Its datastore.
    pub datastore_id: DatastoreId,
    /// The image set.
    pub image_set_id: ImageSetId,
    /// Found by discovery rather than configured.
    pub discovered: bool,
    /// Its last properties (without `message`).
    pub snapshot: Snapshot,
    /// When its current workflow status was first observed.
    pub status_since: Option<EpochSeconds>,
    /// When a poll last succeeded.
    pub last_success: Option<EpochSeconds>,
    /// GetImageSet answered 404 after it had been seen.
    pub gone: bool,
}

/// One transition counter as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCount {
    /// Datastore label.
    pub datastore_id: DatastoreId,
    /// From label.
    pub from: String,
    /// To label.
    pub to: String,
    /// The count.
    pub count: u64,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this build.
    pub version: u32,
    /// When it was written (epoch seconds).
    pub written_at: EpochSeconds,
    /// Image sets with a snapshot.
    pub image_sets: Vec<SavedImageSet>,
    /// `healthimaging_workflow_transitions_total`.
    pub workflow_transitions: Vec<SavedCount>,
    /// `healthimaging_storage_tier_transitions_total`.
    pub storage_tier_transitions: Vec<SavedCount>,
}

/// Why a state file could not be used (the exporter then starts fresh).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not JSON of the expected shape (corrupt or truncated).
    #[error("{path} is not a valid state file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// Written by an incompatible version.
    #[error("{path} has state format version {found}, this build reads version {FORMAT_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
}

/// What the state looks like as a file (pure: state in, value out).
pub fn capture(state: &State, now: EpochSeconds) -> Saved {
    let counts = |table: &std::collections::BTreeMap<TransitionKey, u64>| {
        table
            .iter()
            .map(|((ds, from, to), n)| SavedCount {
                datastore_id: *ds,
                from: from.clone(),
                to: to.clone(),
                count: *n,
            })
            .collect()
    };
    Saved {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        written_at: now,
        image_sets: state
            .entries
            .iter()
            .filter_map(|(key, e)| {
                let snapshot = e.snapshot.as_ref()?;
                Some(SavedImageSet {
                    datastore_id: key.datastore_id,
                    image_set_id: key.image_set_id,
                    discovered: e.origin == Origin::Discovered,
                    snapshot: Snapshot {
                        message: None,
                        ..snapshot.clone()
                    },
                    status_since: e.status_since,
                    last_success: e.last_success,
                    gone: e.gone,
                })
            })
            .collect(),
        workflow_transitions: counts(&state.workflow_transitions),
        storage_tier_transitions: counts(&state.storage_tier_transitions),
    }
}

/// Writes `saved` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over the old file, fsync of the directory. A crash leaves the old or the new
/// file, never a torn one.
pub fn write(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let body = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    // Unique per write, so two writers (a periodic save overrunning shutdown) never share it.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Not every filesystem can sync a directory; the rename already happened.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a state file; `Ok(None)` when there is none yet.
pub fn read(path: &Path) -> Result<Option<Saved>, LoadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LoadError::Read {
                path: path.into(),
                source,
            })
        }
    };
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let corrupt = |e: serde_json::Error| LoadError::Corrupt {
        path: path.into(),
        reason: e.to_string(),
    };
    let header: Header = serde_json::from_slice(&bytes).map_err(corrupt)?;
    if header.format != FORMAT {
        return Err(LoadError::Corrupt {
            path: path.into(),
            reason: format!("format is {:?}, not {FORMAT:?}", header.format),
        });
    }
    if header.version != FORMAT_VERSION {
        return Err(LoadError::Version {
            path: path.into(),
            found: header.version,
        });
    }
    serde_json::from_slice(&bytes).map(Some).map_err(corrupt)
}

impl SavedImageSet {
    /// The image set's key.
    pub fn key(&self) -> ImageSetKey {
        ImageSetKey {
            datastore_id: self.datastore_id,
            image_set_id: self.image_set_id,
        }
    }

    /// The store entry this restores (not up until polled again).
    pub fn entry(&self, pinned: Option<crate::ids::VersionId>) -> Entry {
        let mut entry = Entry::restored(
            pinned,
            if self.discovered {
                Origin::Discovered
            } else {
                Origin::Configured
            },
            self.snapshot.clone(),
        );
        entry.status_since = self.status_since;
        entry.last_success = self.last_success;
        entry.gone = self.gone;
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageSetTarget;
    use crate::ids::VersionId;
    use crate::model::{ImageSetState, StorageTier, WorkflowStatus};
    use crate::store::Store;

    fn key(n: u8) -> ImageSetKey {
        ImageSetKey {
            datastore_id: DatastoreId::parse(&format!("{n:032x}")).unwrap(),
            image_set_id: ImageSetId::parse(&format!("{:032x}", n as u32 + 100)).unwrap(),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            version_id: VersionId::new(2),
            workflow_status: Some(WorkflowStatus::ImportFailed),
            state: ImageSetState::Active,
            storage_tier: Some(StorageTier::FrequentAccess),
            image_set_arn: Some(
                "arn:aws:medical-imaging:us-east-1:123456789012:datastore/x".into(),
            ),
            is_primary: Some(true),
            forced: None,
            message: Some("patient DOE^JOHN has inconsistent tags".into()),
            created_at: Some(1.0),
            updated_at: Some(2.0),
            deleted_at: None,
            last_accessed_at: None,
        }
    }

    #[test]
    fn round_trip_without_messages() {
        let store = Store::new(&[ImageSetTarget {
            datastore_id: key(1).datastore_id,
            image_set_id: key(1).image_set_id,
            version_id: None,
        }]);
        store.record_success(&key(1), snapshot(), 10.0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let saved = capture(&store.read(), 20.0);
        write(&path, &saved).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("DOE^JOHN"), "{text}");
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back, saved);
        assert_eq!(back.image_sets[0].snapshot.message, None);
        assert_eq!(back.image_sets[0].last_success, Some(10.0));
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only the state file remains");
    }

    #[test]
    fn missing_is_none_and_damage_is_an_error_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(read(&path).unwrap().is_none());
        let store = Store::new(&[]);
        store.record_success(&key(2), snapshot(), 10.0);
        let good = serde_json::to_string(&capture(&store.read(), 1.0)).unwrap();
        let cases = [
            ("truncated", good[..good.len() / 2].to_string()),
            ("garbage", "\u{0}\u{1}not json".to_string()),
            ("empty", String::new()),
            ("wrong format", good.replace(FORMAT, "something-else")),
            (
                "wrong shape",
                good.replace("\"image_sets\":[", "\"image_sets\":[1,"),
            ),
        ];
        for (what, text) in cases {
            std::fs::write(&path, text).unwrap();
            assert!(
                matches!(read(&path), Err(LoadError::Corrupt { .. })),
                "{what}"
            );
        }
        std::fs::write(&path, good.replace("\"version\":1", "\"version\":99")).unwrap();
        assert!(matches!(
            read(&path),
            Err(LoadError::Version { found: 99, .. })
        ));
    }
}
