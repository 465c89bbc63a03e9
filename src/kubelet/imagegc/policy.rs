//! Image garbage collection decisions (pure), upstream's image GC manager:
//! image records (first detected, last used), how many bytes to free when
//! usage crosses the high threshold, and which images go, least recently
//! used first.
//!
//! Invariants: an image in use by any container (running or exited),
//! pinned, or detected less than `min_age` ago is never chosen; records of
//! images that disappeared are dropped; choosing stops as soon as enough
//! bytes are freed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// An image as CRI lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub digests: Vec<String>,
    pub size: u64,
    pub pinned: bool,
}

impl ImageInfo {
    /// Whether a container image reference (id, tag or digest) names this image.
    pub fn matches(&self, reference: &str) -> bool {
        self.id == reference
            || self.tags.iter().any(|t| t == reference)
            || self.digests.iter().any(|d| d == reference)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub first_detected: Instant,
    /// `None` until a container is seen using it.
    pub last_used: Option<Instant>,
}

pub type Records = HashMap<String, Record>;

/// Image ids in use by any of `refs` (container image references).
pub fn in_use(images: &[ImageInfo], refs: &HashSet<String>) -> HashSet<String> {
    images
        .iter()
        .filter(|i| refs.iter().any(|r| i.matches(r)))
        .map(|i| i.id.clone())
        .collect()
}

/// Update the records with what is listed now.
pub fn detect(records: &mut Records, images: &[ImageInfo], used: &HashSet<String>, now: Instant) {
    records.retain(|id, _| images.iter().any(|i| &i.id == id));
    for i in images {
        let r = records.entry(i.id.clone()).or_insert(Record {
            first_detected: now,
            last_used: None,
        });
        if used.contains(&i.id) {
            r.last_used = Some(now);
        }
    }
}

/// Percent of the filesystem in use, rounded like upstream (`100 -
/// available*100/capacity`, integer division).
pub fn usage_percent(capacity: u64, available: u64) -> u64 {
    if capacity == 0 {
        return 0;
    }
    100 - (available.min(capacity) as u128 * 100 / capacity as u128) as u64
}

/// Bytes to free when usage is at or above `high`: enough to get down to
/// `low`. `None` below the high threshold.
pub fn bytes_to_free(capacity: u64, available: u64, high: u8, low: u8) -> Option<u64> {
    if capacity == 0 || usage_percent(capacity, available) < u64::from(high) {
        return None;
    }
    let target_available = capacity as u128 * (100 - u128::from(low.min(100))) / 100;
    Some(
        target_available
            .saturating_sub(available as u128)
            .min(u64::MAX as u128) as u64,
    )
}

/// What to delete, and how many bytes that frees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Choice {
    pub delete: Vec<String>,
    pub freed: u64,
}

/// Least recently used unused images (never used counts as oldest; ties by
/// first detection) until `wanted` bytes are freed.
pub fn choose(
    records: &Records,
    images: &[ImageInfo],
    used: &HashSet<String>,
    pinned: &dyn Fn(&ImageInfo) -> bool,
    wanted: u64,
    min_age: Duration,
    now: Instant,
) -> Choice {
    let mut cands: Vec<(&ImageInfo, &Record)> = images
        .iter()
        .filter(|i| !used.contains(&i.id) && !i.pinned && !pinned(i))
        .filter_map(|i| Some((i, records.get(&i.id)?)))
        .filter(|(_, r)| now.saturating_duration_since(r.first_detected) >= min_age)
        .filter(|(_, r)| r.last_used.is_none_or(|u| u < now))
        .collect();
    cands.sort_by(|(a_img, a), (b_img, b)| {
        a.last_used
            .cmp(&b.last_used)
            .then(a.first_detected.cmp(&b.first_detected))
            .then(a_img.id.cmp(&b_img.id))
    });
    let mut out = Choice::default();
    for (img, _) in cands {
        if out.freed >= wanted {
            break;
        }
        out.delete.push(img.id.clone());
        out.freed = out.freed.saturating_add(img.size);
    }
    out
}

/// Upstream's text when GC cannot free enough (`FreeDiskSpaceFailed`).
pub fn not_enough_message(attempted: u64, freed: u64) -> String {
    format!(
        "Failed to garbage collect required amount of images. Attempted to free {attempted} bytes, but only found {freed} bytes eligible to free."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, tag: &str, size: u64) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            tags: vec![tag.into()],
            size,
            ..Default::default()
        }
    }

    #[test]
    fn thresholds() {
        for (cap, avail, high, low, want) in [
            (100, 20, 85, 80, None),    // 80 % used
            (100, 15, 85, 80, Some(5)), // 85 % used: free down to 80 %
            (100, 13, 85, 80, Some(7)),
            (1000, 130, 1, 0, Some(870)), // everything
            (100, 100, 1, 0, None),       // empty disk
            (0, 0, 85, 80, None),
        ] {
            assert_eq!(
                bytes_to_free(cap, avail, high, low),
                want,
                "{cap} {avail} {high} {low}"
            );
        }
        assert_eq!(usage_percent(252, 33), 87);
    }

    #[test]
    fn choice_is_lru_and_skips_protected_images() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let images = vec![
            img("sha256:pause", "skiff.invalid/pause:3.10", 1),
            img("sha256:used", "u:1", 10),
            img("sha256:old", "o:1", 100),
            img("sha256:older", "p:1", 1000),
            img("sha256:young", "y:1", 10000),
            ImageInfo {
                pinned: true,
                ..img("sha256:pinned", "q:1", 5)
            },
            img("sha256:airgap", "a:1", 7),
        ];
        let mut records = Records::new();
        let refs: HashSet<String> = ["u:1".to_string(), "sha256:old".to_string()].into();
        // t0: all detected; `old` and `used` in use
        let first: Vec<ImageInfo> = images
            .iter()
            .filter(|i| i.id != "sha256:young")
            .cloned()
            .collect();
        detect(&mut records, &first, &in_use(&first, &refs), t0);
        // t0+60: only `used` in use; `young` appears later
        let refs2: HashSet<String> = ["sha256:used".to_string()].into();
        let now = t0 + s(60);
        let mut later = records.clone();
        let used = in_use(&images, &refs2);
        detect(&mut later, &images, &used, now);
        assert_eq!(later["sha256:young"].first_detected, now);
        let pinned = |i: &ImageInfo| {
            i.tags
                .iter()
                .any(|t| t == "skiff.invalid/pause:3.10" || t == "a:1")
        };
        let cases: &[(u64, Duration, &[&str], u64)] = &[
            // `older` was never used: goes first; `old` was last used at t0
            (1, s(30), &["sha256:older"], 1000),
            (1001, s(30), &["sha256:older", "sha256:old"], 1100),
            (u64::MAX, s(30), &["sha256:older", "sha256:old"], 1100),
            // minimum age keeps everything detected less than 2 minutes ago
            (u64::MAX, s(120), &[], 0),
            (0, s(0), &[], 0),
        ];
        for (wanted, min_age, want, freed) in cases {
            let c = choose(&later, &images, &used, &pinned, *wanted, *min_age, now);
            assert_eq!(c.delete, *want, "{wanted} {min_age:?}");
            assert_eq!(c.freed, *freed);
        }
        // a vanished image loses its record
        detect(&mut later, &images[..2], &used, now);
        assert_eq!(later.len(), 2);
        assert_eq!(
            not_enough_message(10, 3),
            "Failed to garbage collect required amount of images. Attempted to free 10 bytes, but only found 3 bytes eligible to free."
        );
    }
}
