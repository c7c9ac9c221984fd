//! Sharding: which exporter instance watches which image set, by a stable hash of the
//! image set id, so instances with the same config split the work without talking.

use crate::config::ShardingConfig;
use crate::ids::ImageSetId;

/// The shard (0-based) `id` belongs to among `total_shards`. XXH3-64 of the id's text is
/// stable across builds, platforms and restarts, so an image set never moves between
/// instances unless `total_shards` changes.
pub fn shard_of(id: &ImageSetId, total_shards: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(id.as_str().as_bytes()) % u64::from(total_shards.max(1))) as u32
}

impl ShardingConfig {
    /// Whether this instance watches image set `id`.
    pub fn owns(&self, id: &ImageSetId) -> bool {
        self.total_shards <= 1 || shard_of(id, self.total_shards) == self.shard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ImageSetId {
        ImageSetId::parse(&format!("{n:032x}")).unwrap()
    }

    #[test]
    fn every_id_has_exactly_one_owner_and_shards_are_balanced() {
        let shards: Vec<ShardingConfig> = (0..3)
            .map(|shard| ShardingConfig {
                shard,
                total_shards: 3,
            })
            .collect();
        let mut per_shard = [0usize; 3];
        for n in 0..30_000 {
            let owners: Vec<_> = shards.iter().filter(|s| s.owns(&id(n))).collect();
            assert_eq!(owners.len(), 1);
            per_shard[owners[0].shard as usize] += 1;
        }
        for count in per_shard {
            assert!((9_000..11_000).contains(&count), "{per_shard:?}");
        }
    }

    const PINNED: u32 = 416_774;

    #[test]
    fn the_hash_is_pinned() {
        // Changing the hash would move every image set to another instance on upgrade.
        let probe = ImageSetId::parse("fedcba9876543210fedcba9876543210").unwrap();
        assert_eq!(shard_of(&probe, 1_000_000), PINNED);
        assert!(ShardingConfig::default().owns(&probe));
    }
}
