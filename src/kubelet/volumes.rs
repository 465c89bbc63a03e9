//! Pod volumes on this node (minimal stand-in written by the pods helper;
//! the volumes helper owns the real module): `emptyDir` and `hostPath`
//! only, under `<pods>/<uid>/volumes/<plugin>/<name>`.
//!
//! Invariant: `prepare` is idempotent and `teardown` removes everything
//! under the pod's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::cri::api;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("preparing volume {name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("unable to find volume {0:?} referenced by a volumeMount")]
    NoSuchVolume(String),
}

pub struct VolumeContext {
    pub client: kube::Client,
    pub pods_dir: PathBuf,
    pub node_name: String,
}

/// Host directories of a pod's volumes, by volume name.
#[derive(Debug, Default)]
pub struct PreparedVolumes {
    dirs: HashMap<String, PathBuf>,
}

pub async fn prepare(ctx: &VolumeContext, pod: &Pod) -> Result<PreparedVolumes, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut dirs = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = if v.empty_dir.is_some() {
            ctx.pods_dir
                .join(&uid)
                .join("volumes/kubernetes.io~empty-dir")
                .join(&v.name)
        } else if let Some(hp) = &v.host_path {
            PathBuf::from(&hp.path)
        } else {
            continue;
        };
        if v.empty_dir.is_some() || hp_create(v) {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|source| VolumeError::Io {
                    name: v.name.clone(),
                    source,
                })?;
        }
        dirs.insert(v.name.clone(), dir);
    }
    Ok(PreparedVolumes { dirs })
}

fn hp_create(v: &k8s_openapi::api::core::v1::Volume) -> bool {
    v.host_path
        .as_ref()
        .is_some_and(|h| h.type_.as_deref() == Some("DirectoryOrCreate"))
}

impl PreparedVolumes {
    pub fn mounts_for(&self, container: &Container) -> Result<Vec<api::Mount>, VolumeError> {
        let mut out = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let Some(dir) = self.dirs.get(&m.name) else {
                return Err(VolumeError::NoSuchVolume(m.name.clone()));
            };
            let mut host = dir.clone();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                host = host.join(sub);
                std::fs::create_dir_all(&host).map_err(|source| VolumeError::Io {
                    name: m.name.clone(),
                    source,
                })?;
            }
            out.push(api::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.display().to_string(),
                readonly: m.read_only.unwrap_or(false),
                ..Default::default()
            });
        }
        Ok(out)
    }
}

pub async fn teardown(pods_dir: &Path, pod_uid: &str) -> Result<(), VolumeError> {
    if pod_uid.is_empty() || pod_uid.contains('/') {
        return Ok(());
    }
    match tokio::fs::remove_dir_all(pods_dir.join(pod_uid)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(VolumeError::Io {
            name: pod_uid.to_string(),
            source,
        }),
    }
}
