//! Images a node needs without any registry: the built-in pause image and
//! the airgap tarballs in `<agent-dir>/images/`, imported into containerd's
//! `k8s.io` namespace (the one CRI reads) through containerd's own API.
//!
//! - `oci` (pure): descriptors, reference names, the pause image, import
//!   plans for OCI-layout and `docker save` tarballs;
//! - `tarball` (blocking I/O): scans and streams tar members;
//! - `content` (gRPC): content store, image store, leases.
//!
//! Invariants: the pause image is named `PAUSE_IMAGE`, is built from the
//! static `pause/pause.rs` executable compiled by `build.rs`, and is the
//! same bytes on every run (so a restart finds it unchanged and skips it);
//! one bad tarball is reported and never stops the others; an image whose
//! name already points at the same target costs one `Images.Get`; a
//! tarball unchanged since its last import (size + mtime, recorded in
//! `<images-dir>/.skiff-import-cache.json`) is not even read. After an
//! import returns, CRI already lists the new images (we wait for it).
//! Images are left packed: containerd's CRI unpacks a layer into the
//! snapshotter the first time a container uses it.

pub mod content;
pub mod oci;
pub mod tarball;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use content::Outcome;
use oci::{BlobSource, ImagePlan};

/// Name of the built-in pause image: CRI's `sandbox_image`. The `.invalid`
/// domain (RFC 2606) can never resolve, so if this image were ever missing
/// containerd fails to pull instead of fetching someone else's image.
pub const PAUSE_IMAGE: &str = "skiff.invalid/pause:3.10";

/// The static pause executable built by `build.rs` from `pause/pause.rs`.
pub static PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// File in the images directory remembering what each tarball imported.
const CACHE_FILE: &str = ".skiff-import-cache.json";
/// How long to wait for CRI to notice an imported image.
const CRI_VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot connect to containerd at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("cannot build the pause image: {0}")]
    Pause(String),
    #[error("importing {image}: containerd: {source}")]
    Containerd {
        image: String,
        source: tonic::Status,
    },
    #[error("cannot read the images directory {path}: {source}")]
    ListDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One image an import made available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedImage {
    pub name: String,
    /// Digest of the image's target (manifest or index).
    pub digest: String,
    /// The tarball, `None` for the built-in pause image.
    pub source: Option<PathBuf>,
    pub outcome: Outcome,
}

/// A tarball that could not be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportFailure {
    pub file: PathBuf,
    pub error: String,
}

#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub images: Vec<ImportedImage>,
    pub failures: Vec<ImportFailure>,
    pub elapsed: Duration,
}

/// The pause image as an import plan (built in memory, deterministic).
pub fn pause_image() -> Result<ImagePlan, ImageError> {
    oci::pause_image(PAUSE_IMAGE, PAUSE_BINARY, oci::host_arch()).map_err(ImageError::Pause)
}

/// Imports the pause image, then every `*.tar`, `*.tar.gz`, `*.tgz` in
/// `images_dir` (absent directory = none). Fails only if containerd is
/// unreachable or the pause image cannot be imported; a bad tarball is
/// logged and listed in `failures`.
pub async fn import_all(socket: &Path, images_dir: &Path) -> Result<ImportReport, ImageError> {
    let started = Instant::now();
    let store = content::Store::new(socket).map_err(|source| ImageError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let mut report = ImportReport::default();

    report.images.push(import_pause(&store).await?);

    let files = tarball::list(images_dir).map_err(|source| ImageError::ListDir {
        path: images_dir.to_path_buf(),
        source,
    })?;
    let mut cache = Cache::load(images_dir);
    let mut new_cache = Cache::default();
    for file in files {
        let key = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = FileStamp::of(&file);
        if let (Some(stamp), Some(hit)) = (&stamp, cache.files.remove(&key))
            && hit.stamp == *stamp
            && still_imported(&store, &hit.images).await
        {
            for (name, digest) in &hit.images {
                report.images.push(ImportedImage {
                    name: name.clone(),
                    digest: digest.clone(),
                    source: Some(file.clone()),
                    outcome: Outcome::Unchanged,
                });
            }
            new_cache.files.insert(key, hit);
            continue;
        }
        match import_tarball(&store, &file).await {
            Ok(images) => {
                for i in &images {
                    tracing::info!(image = %i.name, digest = %i.digest, file = %file.display(), outcome = ?i.outcome, "image imported");
                }
                if let Some(stamp) = stamp {
                    let images = images
                        .iter()
                        .map(|i| (i.name.clone(), i.digest.clone()))
                        .collect();
                    new_cache.files.insert(key, CacheEntry { stamp, images });
                }
                report.images.extend(images);
            }
            Err(error) => {
                tracing::error!(file = %file.display(), "cannot import image tarball: {error}");
                report.failures.push(ImportFailure { file, error });
            }
        }
    }
    new_cache.save(images_dir);

    let changed: Vec<&str> = report
        .images
        .iter()
        .filter(|i| i.outcome != Outcome::Unchanged)
        .map(|i| i.name.as_str())
        .collect();
    wait_cri_sees(socket, &changed).await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Imports the pause image unless containerd has it built from this very
/// executable (checked by label, without building the image).
async fn import_pause(store: &content::Store) -> Result<ImportedImage, ImageError> {
    let containerd_err = |source| ImageError::Containerd {
        image: PAUSE_IMAGE.to_string(),
        source,
    };
    let binary_digest = oci::sha256_digest(PAUSE_BINARY);
    if let Some((target, labels)) = store.image(PAUSE_IMAGE).await.map_err(containerd_err)?
        && labels.get(oci::LABEL_PAUSE_BINARY) == Some(&binary_digest)
    {
        return Ok(ImportedImage {
            name: PAUSE_IMAGE.to_string(),
            digest: target.digest,
            source: None,
            outcome: Outcome::Unchanged,
        });
    }
    let pause = pause_image()?;
    let outcome = import_plans(store, None, std::slice::from_ref(&pause))
        .await
        .map_err(|e| match e {
            PlanError::Containerd(source) => containerd_err(source),
            PlanError::Other(msg) => ImageError::Pause(msg),
        })?;
    Ok(ImportedImage {
        name: pause.name,
        digest: pause.target.digest,
        source: None,
        outcome: outcome.first().copied().unwrap_or(Outcome::Unchanged),
    })
}

/// Imports every image of one tarball.
pub async fn import_tarball(
    store: &content::Store,
    file: &Path,
) -> Result<Vec<ImportedImage>, String> {
    let path = file.to_path_buf();
    let scan = tokio::task::spawn_blocking(move || tarball::scan(&path))
        .await
        .map_err(|e| format!("scan task failed: {e}"))??;
    let plans = oci::plan_tarball(&scan, oci::host_arch())?;
    drop(scan);
    let outcomes = import_plans(store, Some(file), &plans)
        .await
        .map_err(|e| match e {
            PlanError::Containerd(s) => format!("containerd: {}", s.message()),
            PlanError::Other(m) => m,
        })?;
    Ok(plans
        .iter()
        .zip(outcomes)
        .map(|(p, outcome)| ImportedImage {
            name: p.name.clone(),
            digest: p.target.digest.clone(),
            source: Some(file.to_path_buf()),
            outcome,
        })
        .collect())
}

enum PlanError {
    Containerd(tonic::Status),
    Other(String),
}

impl From<tonic::Status> for PlanError {
    fn from(s: tonic::Status) -> Self {
        PlanError::Containerd(s)
    }
}

/// Writes the missing blobs of `plans` (streaming tar members from `file`)
/// under one lease, then points each name at its target.
async fn import_plans(
    store: &content::Store,
    file: Option<&Path>,
    plans: &[ImagePlan],
) -> Result<Vec<Outcome>, PlanError> {
    let mut todo = Vec::new();
    let mut outcomes = vec![Outcome::Unchanged; plans.len()];
    for (i, plan) in plans.iter().enumerate() {
        match store.image(&plan.name).await? {
            Some((t, labels))
                if t.digest == plan.target.digest
                    && t.media_type == plan.target.media_type
                    && plan.labels.iter().all(|(k, v)| labels.get(k) == Some(v)) => {}
            _ => todo.push(i),
        }
    }
    if todo.is_empty() {
        return Ok(outcomes);
    }
    let mut store = store.clone();
    store.begin_lease().await?;
    let result = write_and_tag(&store, file, plans, &todo).await;
    store.end_lease().await;
    for (i, outcome) in result? {
        outcomes[i] = outcome;
    }
    Ok(outcomes)
}

async fn write_and_tag(
    store: &content::Store,
    file: Option<&Path>,
    plans: &[ImagePlan],
    todo: &[usize],
) -> Result<Vec<(usize, Outcome)>, PlanError> {
    // Tar members to stream, by member path → (digest, size, labels).
    let mut streamed: BTreeMap<String, (String, i64, BTreeMap<String, String>)> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for &i in todo {
        for blob in &plans[i].blobs {
            if !seen.insert(blob.digest.clone()) {
                continue;
            }
            if store.blob_info(&blob.digest).await?.is_some() {
                // Present (maybe written by another import): make sure the
                // GC references are there too.
                store.add_labels(&blob.digest, &blob.labels).await?;
                continue;
            }
            match &blob.source {
                BlobSource::Memory(data) => {
                    store.put_blob(&blob.digest, data, &blob.labels).await?;
                }
                BlobSource::TarEntry(member) => {
                    streamed.insert(
                        member.clone(),
                        (blob.digest.clone(), blob.size, blob.labels.clone()),
                    );
                }
            }
        }
    }
    if !streamed.is_empty() {
        let Some(file) = file else {
            return Err(PlanError::Other("blob to stream without a tarball".into()));
        };
        stream_members(store, file, &streamed).await?;
    }
    let mut out = Vec::new();
    for &i in todo {
        out.push((
            i,
            store
                .put_image(&plans[i].name, &plans[i].target, &plans[i].labels)
                .await?,
        ));
    }
    Ok(out)
}

async fn stream_members(
    store: &content::Store,
    file: &Path,
    members: &BTreeMap<String, (String, i64, BTreeMap<String, String>)>,
) -> Result<(), PlanError> {
    let (tx, mut rx) = mpsc::channel(4);
    let wanted: BTreeMap<String, u64> = members
        .iter()
        .map(|(m, (_, size, _))| (m.clone(), *size as u64))
        .collect();
    let path = file.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || tarball::stream(&path, &wanted, &tx));
    let mut writer: Option<content::BlobWriter> = None;
    let mut failure: Option<PlanError> = None;
    while let Some(piece) = rx.recv().await {
        let step = async {
            match piece {
                tarball::Piece::Begin { member } => {
                    writer = match members.get(&member) {
                        Some((digest, size, labels)) => {
                            store.start_blob(digest, *size, labels).await?
                        }
                        None => None,
                    };
                }
                tarball::Piece::Data(data) => {
                    if let Some(w) = writer.as_mut() {
                        w.write(data).await?;
                    }
                }
                tarball::Piece::End => {
                    if let Some(w) = writer.take() {
                        w.commit().await?;
                    }
                }
            }
            Ok::<(), tonic::Status>(())
        };
        if let Err(e) = step.await {
            failure = Some(e.into());
            break;
        }
    }
    drop(rx);
    let read = reader
        .await
        .map_err(|e| PlanError::Other(format!("tar reader failed: {e}")))?;
    if let Some(f) = failure {
        return Err(f);
    }
    read.map_err(PlanError::Other)
}

/// CRI learns about images from containerd's events, a moment after they
/// are created: wait until it lists each, so a sandbox can use them at once.
async fn wait_cri_sees(socket: &Path, names: &[&str]) {
    if names.is_empty() {
        return;
    }
    let Ok(cri) = crate::kubelet::cri::Cri::new(socket) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + CRI_VISIBLE_TIMEOUT;
    for name in names {
        loop {
            let req = crate::kubelet::cri::api::ImageStatusRequest {
                image: Some(crate::kubelet::cri::api::ImageSpec {
                    image: name.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            };
            match cri.image.clone().image_status(req).await {
                Ok(r) if r.get_ref().image.is_some() => break,
                _ if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(image = %name, "imported, but CRI does not list it yet");
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

async fn still_imported(store: &content::Store, images: &[(String, String)]) -> bool {
    for (name, digest) in images {
        match store.image_target(name).await {
            Ok(Some(t)) if t.digest == *digest => {}
            _ => return false,
        }
    }
    !images.is_empty()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    size: u64,
    mtime_ns: u128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let md = std::fs::metadata(path).ok()?;
        let mtime_ns = md
            .modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        Some(FileStamp {
            size: md.len(),
            mtime_ns,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CacheEntry {
    stamp: FileStamp,
    /// (image name, target digest)
    images: Vec<(String, String)>,
}

/// What each tarball imported last time, keyed by file name.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    files: BTreeMap<String, CacheEntry>,
}

impl Cache {
    fn load(dir: &Path) -> Cache {
        std::fs::read(dir.join(CACHE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Best effort: a read-only images directory only costs a re-scan.
    fn save(&self, dir: &Path) {
        if self.files.is_empty() && !dir.join(CACHE_FILE).exists() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec_pretty(self) else {
            return;
        };
        let tmp = dir.join(format!("{CACHE_FILE}.tmp"));
        if let Err(e) =
            std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, dir.join(CACHE_FILE)))
        {
            tracing::debug!(dir = %dir.display(), "cannot record imported tarballs: {e}");
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_pause_binary_is_a_small_static_elf() {
        assert!(PAUSE_BINARY.starts_with(b"\x7fELF"));
        assert!(PAUSE_BINARY.len() < 1 << 20, "{} bytes", PAUSE_BINARY.len());
        // ELF64 little-endian with no PT_INTERP program header: statically
        // linked, no dynamic loader needed inside the image.
        let b = PAUSE_BINARY;
        assert_eq!((b[4], b[5]), (2, 1), "ELF64 LE");
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
        assert!(phnum > 0);
        for i in 0..phnum {
            let o = phoff + i * phentsize;
            let p_type = u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
            assert_ne!(p_type, 3, "PT_INTERP found: dynamically linked");
        }
    }

    #[test]
    fn pause_image_name_is_fully_qualified_and_stable() {
        assert_eq!(
            oci::normalize_reference(PAUSE_IMAGE).as_deref(),
            Some(PAUSE_IMAGE)
        );
        let a = pause_image().unwrap();
        let b = pause_image().unwrap();
        assert_eq!(a.target, b.target);
        assert_eq!(a.target.media_type, oci::OCI_MANIFEST);
    }
}
