//! Image garbage collection (upstream's image GC manager) over CRI: every
//! `image-gc-period` (5 min) it records which images exist and which any
//! container (running or exited) uses, and when the image filesystem's
//! usage is at or above `image-gc-high-threshold` removes unused images,
//! least recently used first, until usage is below `image-gc-low-threshold`.
//! The eviction manager calls [`ImageGc::delete_unused`] under disk pressure.
//!
//! Decisions live in `imagegc::policy` (pure). Never removed: images in use,
//! the pause image, images the runtime reports pinned, and the images the
//! agent imported from its airgap directory (pinned like k3s pins them),
//! and images first seen less than `minimum-image-ttl-duration` ago.
//! When it cannot free enough it records `FreeDiskSpaceFailed` on the Node,
//! and `ImageGCFailed` when a run fails twice in a row (as upstream).

pub mod policy;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::{Mutex, watch};

use crate::controllers::events::{Kind, Recorder};
use crate::kubelet::cri::{Cri, CriError, api};
use policy::{ImageInfo, Records};

#[derive(Debug, thiserror::Error)]
pub enum ImageGcError {
    #[error("{0}")]
    Cri(#[from] CriError),
    #[error("cannot read the image filesystem {0}")]
    FsStats(String),
    #[error("{}", policy::not_enough_message(*attempted, *freed))]
    NotEnough { attempted: u64, freed: u64 },
}

/// What the collector is told once.
#[derive(Clone, Debug)]
pub struct ImageGcConfig {
    pub high_threshold: u8,
    pub low_threshold: u8,
    pub min_age: Duration,
    /// Image names never collected (the pause image, airgap images).
    pub pinned_names: HashSet<String>,
    /// Image filesystem when CRI does not report one.
    pub fallback_fs: PathBuf,
    pub node_name: String,
}

pub struct ImageGc {
    cri: Cri,
    cfg: ImageGcConfig,
    recorder: Recorder,
    records: Mutex<Records>,
}

/// The Node as the kubelet names it in events (uid = node name, as upstream).
pub fn node_ref(node: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.into()),
        uid: Some(node.into()),
        ..Default::default()
    }
}

impl ImageGc {
    pub fn new(cri: Cri, cfg: ImageGcConfig, recorder: Recorder) -> Arc<ImageGc> {
        Arc::new(ImageGc {
            cri,
            cfg,
            recorder,
            records: Mutex::new(Records::new()),
        })
    }

    fn is_pinned(&self, i: &ImageInfo) -> bool {
        i.pinned || i.tags.iter().any(|t| self.cfg.pinned_names.contains(t))
    }

    /// Images and the ids in use, with the records brought up to date.
    async fn detect(&self) -> Result<(Vec<ImageInfo>, HashSet<String>), ImageGcError> {
        let images: Vec<ImageInfo> = self
            .cri
            .image
            .clone()
            .list_images(api::ListImagesRequest::default())
            .await
            .map_err(CriError::from)?
            .into_inner()
            .images
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i.repo_tags,
                digests: i.repo_digests,
                size: i.size,
                pinned: i.pinned,
            })
            .collect();
        let containers = self
            .cri
            .runtime
            .clone()
            .list_containers(api::ListContainersRequest::default())
            .await
            .map_err(CriError::from)?
            .into_inner()
            .containers;
        let mut refs: HashSet<String> = HashSet::new();
        for c in containers {
            if !c.image_ref.is_empty() {
                refs.insert(c.image_ref);
            }
            if let Some(spec) = c.image {
                refs.insert(spec.image);
            }
        }
        let used = policy::in_use(&images, &refs);
        policy::detect(
            &mut *self.records.lock().await,
            &images,
            &used,
            Instant::now(),
        );
        Ok((images, used))
    }

    async fn fs_stats(&self) -> Result<(u64, u64), ImageGcError> {
        let path =
            crate::kubelet::eviction::observe::image_fs_path(&self.cri, &self.cfg.fallback_fs)
                .await;
        let (bytes, _) = crate::kubelet::eviction::observe::filesystem(&path)
            .ok_or_else(|| ImageGcError::FsStats(path.display().to_string()))?;
        Ok((bytes.capacity.max(0) as u64, bytes.available.max(0) as u64))
    }

    /// Remove unused images, least recently used first, until `wanted`
    /// bytes are freed; returns the bytes freed.
    async fn free(&self, wanted: u64) -> Result<u64, ImageGcError> {
        let (images, used) = self.detect().await?;
        let choice = {
            let records = self.records.lock().await;
            policy::choose(
                &records,
                &images,
                &used,
                &|i| self.is_pinned(i),
                wanted,
                self.cfg.min_age,
                Instant::now(),
            )
        };
        let mut freed = 0u64;
        for id in &choice.delete {
            let size = images.iter().find(|i| &i.id == id).map_or(0, |i| i.size);
            let tags = images
                .iter()
                .find(|i| &i.id == id)
                .map(|i| i.tags.join(","))
                .unwrap_or_default();
            match self
                .cri
                .image
                .clone()
                .remove_image(api::RemoveImageRequest {
                    image: Some(api::ImageSpec {
                        image: id.clone(),
                        ..Default::default()
                    }),
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(image = %id, %tags, size, "image GC: removed unused image");
                    self.records.lock().await.remove(id);
                    freed = freed.saturating_add(size);
                }
                Err(e) => tracing::warn!(image = %id, "image GC: removing image: {}", e.message()),
            }
        }
        Ok(freed)
    }

    /// One threshold-driven run (upstream `GarbageCollect`).
    pub async fn garbage_collect(&self) -> Result<u64, ImageGcError> {
        let (capacity, available) = self.fs_stats().await?;
        let Some(wanted) = policy::bytes_to_free(
            capacity,
            available,
            self.cfg.high_threshold,
            self.cfg.low_threshold,
        ) else {
            // keep the records fresh so last-used times are right later
            self.detect().await?;
            return Ok(0);
        };
        tracing::info!(
            usage = policy::usage_percent(capacity, available),
            high = self.cfg.high_threshold,
            wanted,
            "image GC: image filesystem above the high threshold"
        );
        let freed = self.free(wanted).await?;
        if freed < wanted {
            let e = ImageGcError::NotEnough {
                attempted: wanted,
                freed,
            };
            self.recorder.record_ref(
                node_ref(&self.cfg.node_name),
                Kind::Warning,
                "FreeDiskSpaceFailed",
                &e.to_string(),
            );
            return Err(e);
        }
        Ok(freed)
    }

    /// Every unused image old enough (disk pressure); bytes freed.
    pub async fn delete_unused(&self) -> Result<u64, ImageGcError> {
        self.free(u64::MAX).await
    }

    /// Refresh the records without deleting anything.
    pub async fn observe(&self) {
        if let Err(e) = self.detect().await {
            tracing::debug!("image GC: listing images: {e}");
        }
    }
}

/// Run image GC every `period` until `stop`.
pub async fn run(gc: Arc<ImageGc>, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut failed_before = false;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
        match gc.garbage_collect().await {
            Ok(_) => failed_before = false,
            Err(e) => {
                if failed_before {
                    tracing::error!("image garbage collection failed multiple times in a row: {e}");
                    gc.recorder.record_ref(
                        node_ref(&gc.cfg.node_name),
                        Kind::Warning,
                        "ImageGCFailed",
                        &e.to_string(),
                    );
                } else {
                    tracing::warn!("image garbage collection failed once: {e}");
                }
                failed_before = true;
            }
        }
    }
}
