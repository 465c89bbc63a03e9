//! Pod volumes on this node: sets up every volume of a pod under
//! `<pods>/<uid>/volumes/kubernetes.io~<plugin>/<name>` (as upstream lays
//! it out), turns a container's `volumeMounts` into CRI mounts, writes the
//! pod's managed `/etc/hosts`, and tears the pod directory down.
//!
//! Supported: emptyDir (disk, or tmpfs for `medium: Memory`), configMap,
//! secret, downwardAPI, projected (configMap, secret, downwardAPI,
//! serviceAccountToken; clusterTrustBundle only when optional), hostPath
//! (all types), persistentVolumeClaim and ephemeral claims bound to a
//! hostPath or local PersistentVolume. Anything else fails with a clear
//! `FailedMount` message.
//!
//! Invariants:
//! - [`prepare`] is idempotent and cheap to repeat: API-data volumes are
//!   rewritten only when their content or modes changed, atomically
//!   (`atomic`), so updates propagate to running containers; tokens are
//!   renewed after 80% of their lifetime.
//! - secret and projected volumes live on tmpfs (secrets never reach the
//!   disk) when the kernel lets us mount one.
//! - configMap, secret, downwardAPI and projected volumes are always mounted
//!   read-only; a `subPath` never resolves outside its volume.
//! - [`teardown`] never deletes anything outside `<pods>/<uid>`: hostPath and
//!   PVC data are bound by the runtime straight from their own paths.
//!
//! Planning (which files, which content and mode) is pure (`plan`); `atomic`
//! and `host` do the filesystem work; `sources` reads the API.

mod atomic;
mod host;
pub mod plan;
pub mod sources;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

use crate::kubelet::cri::api::{Mount, MountPropagation};
use plan::{DEFAULT_MODE, KeySource, Payload, mode_bits};

/// What [`prepare`] needs from the agent.
#[derive(Clone)]
pub struct VolumeContext {
    pub client: kube::Client,
    /// `AgentConfig::pods_dir()`.
    pub pods_dir: PathBuf,
    pub node_name: String,
    /// Set for the periodic refresh of a running pod: configMap and secret
    /// reads may come from this shared cache (see `sources::ReadCache`).
    pub reads: Option<std::sync::Arc<sources::ReadCache>>,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Setting up one volume failed; the text is the `FailedMount` event.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    SetUp { volume: String, message: String },
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    UnknownVolume { volume: String, container: String },
    #[error(
        "failed to prepare subPath for volumeMount \"{volume_mount}\" of container \"{container}\": {message}"
    )]
    SubPath {
        volume_mount: String,
        container: String,
        message: String,
    },
    #[error("invalid pod: {0}")]
    InvalidPod(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl VolumeError {
    /// The volume a `SetUp` error is about.
    pub fn volume(&self) -> Option<&str> {
        match self {
            VolumeError::SetUp { volume, .. } => Some(volume),
            _ => None,
        }
    }
}

fn setup_err(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::SetUp {
        volume: volume.to_string(),
        message: message.into(),
    }
}

/// One set-up volume: where it is on the host and whether it must be
/// mounted read-only whatever the volumeMount says.
#[derive(Clone, Debug)]
struct PreparedVolume {
    host_path: PathBuf,
    read_only: bool,
}

/// The pod's volumes, ready to be mounted into its containers.
#[derive(Clone, Debug)]
pub struct PreparedVolumes {
    pod: Pod,
    pod_dir: PathBuf,
    volumes: BTreeMap<String, PreparedVolume>,
}

/// Plugin directory names, as upstream.
const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
const CONFIG_MAP: &str = "kubernetes.io~configmap";
const SECRET: &str = "kubernetes.io~secret";
const DOWNWARD_API: &str = "kubernetes.io~downward-api";
const PROJECTED: &str = "kubernetes.io~projected";

/// The pod directory's file holding its managed `/etc/hosts`.
const ETC_HOSTS: &str = "etc-hosts";

/// The cluster domain `write_etc_hosts` uses (skiff's default).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// A uid used as a directory name must be one plain path element.
fn checked_uid(uid: &str) -> Result<&str, VolumeError> {
    if uid.is_empty() || uid == "." || uid == ".." || uid.contains('/') || uid.contains('\0') {
        return Err(VolumeError::InvalidPod(format!("bad pod uid {uid:?}")));
    }
    Ok(uid)
}

/// Set up every volume of `pod` (again), returning where each one is.
/// All volumes are attempted; the first failure is returned.
pub async fn prepare(ctx: &VolumeContext, pod: &Pod) -> Result<PreparedVolumes, VolumeError> {
    let uid = checked_uid(pod.metadata.uid.as_deref().unwrap_or_default())?;
    let pod_dir = ctx.pods_dir.join(uid);
    let vols_dir = pod_dir.join("volumes");
    host::ensure_dir(&vols_dir, 0o750).map_err(|source| VolumeError::Io {
        context: format!("cannot create {}", vols_dir.display()),
        source,
    })?;
    let mut volumes = BTreeMap::new();
    let mut first_err = None;
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        match setup_volume(ctx, pod, &vols_dir, v).await {
            Ok(p) => {
                volumes.insert(v.name.clone(), p);
            }
            Err(e) => {
                tracing::warn!(pod = ?pod.metadata.name, volume = %v.name, "{e}");
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(PreparedVolumes {
        pod: pod.clone(),
        pod_dir,
        volumes,
    })
}

async fn setup_volume(
    ctx: &VolumeContext,
    pod: &Pod,
    vols_dir: &Path,
    v: &Volume,
) -> Result<PreparedVolume, VolumeError> {
    let name = v.name.as_str();
    if plan::check_payload_path(name).is_err() || name.contains('/') {
        return Err(setup_err(name, "invalid volume name"));
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let io = |e: std::io::Error| setup_err(name, e.to_string());
    if let Some(ed) = &v.empty_dir {
        let dir = vols_dir.join(EMPTY_DIR).join(name);
        host::ensure_dir(&dir, 0o777).map_err(io)?;
        if ed.medium.as_deref() == Some("Memory") {
            let size = ed
                .size_limit
                .as_ref()
                .and_then(|q| crate::api::quantity::parse_quantity(&q.0))
                .map(|q| (q.milli_value() / 1000).max(0) as u64);
            host::mount_tmpfs(&dir, size, 0o777).map_err(io)?;
        }
        return Ok(PreparedVolume {
            host_path: dir,
            read_only: false,
        });
    }
    if let Some(hp) = &v.host_path {
        let path = PathBuf::from(&hp.path);
        host::check_host_path(&path, hp.type_.as_deref().unwrap_or(""))
            .map_err(|m| setup_err(name, m))?;
        return Ok(PreparedVolume {
            host_path: path,
            read_only: false,
        });
    }
    if let Some(c) = &v.persistent_volume_claim {
        return claim_volume(
            ctx,
            ns,
            name,
            &c.claim_name,
            c.read_only == Some(true),
            None,
        )
        .await;
    }
    if v.ephemeral.is_some() {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let claim = format!("{pod_name}-{name}");
        let owner = pod.metadata.uid.as_deref();
        return claim_volume(ctx, ns, name, &claim, false, owner).await;
    }
    let (plugin, tmpfs, payload) = if let Some(cm) = &v.config_map {
        let data = sources::read_cached(
            &ctx.client,
            ctx.reads.as_deref(),
            KeySource::ConfigMap,
            ns,
            &cm.name,
        )
        .await
        .map_err(|m| setup_err(name, m))?;
        let payload = plan::project_keys(
            KeySource::ConfigMap,
            &cm.name,
            data.as_ref(),
            cm.items.as_deref(),
            mode_bits(cm.default_mode, DEFAULT_MODE),
            cm.optional == Some(true),
        )
        .map_err(|m| setup_err(name, m))?;
        (CONFIG_MAP, false, payload)
    } else if let Some(s) = &v.secret {
        let sname = s.secret_name.clone().unwrap_or_default();
        let data = sources::read_cached(
            &ctx.client,
            ctx.reads.as_deref(),
            KeySource::Secret,
            ns,
            &sname,
        )
        .await
        .map_err(|m| setup_err(name, m))?;
        let payload = plan::project_keys(
            KeySource::Secret,
            &sname,
            data.as_ref(),
            s.items.as_deref(),
            mode_bits(s.default_mode, DEFAULT_MODE),
            s.optional == Some(true),
        )
        .map_err(|m| setup_err(name, m))?;
        (SECRET, true, payload)
    } else if let Some(d) = &v.downward_api {
        let items = d.items.clone().unwrap_or_default();
        let alloc = if plan::needs_allocatable(&items) {
            sources::node_allocatable(&ctx.client, &ctx.node_name)
                .await
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let payload =
            plan::project_downward(pod, &items, mode_bits(d.default_mode, DEFAULT_MODE), &alloc)
                .map_err(|m| setup_err(name, m))?;
        (DOWNWARD_API, false, payload)
    } else if let Some(p) = &v.projected {
        let dir = vols_dir.join(PROJECTED).join(name);
        let payload = projected_payload(ctx, pod, &dir, p)
            .await
            .map_err(|m| setup_err(name, m))?;
        (PROJECTED, true, payload)
    } else {
        return Err(setup_err(
            name,
            format!(
                "unsupported volume type {:?}: this node supports emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim and ephemeral",
                volume_kind(v)
            ),
        ));
    };
    let dir = vols_dir.join(plugin).join(name);
    host::ensure_dir(&dir, 0o755).map_err(io)?;
    if tmpfs && let Err(e) = host::mount_tmpfs(&dir, None, 0o755) {
        tracing::warn!(volume = %name, "cannot mount tmpfs for a secret volume, using disk: {e}");
    }
    atomic::write(&dir, &payload, chrono::Utc::now()).map_err(io)?;
    Ok(PreparedVolume {
        host_path: dir,
        read_only: true,
    })
}

/// The source key of a volume (`nfs`, `csi`, …) for the unsupported message.
fn volume_kind(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, val)| k.as_str() != "name" && !val.is_null())
                    .map(|(k, _)| k.clone())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn claim_volume(
    ctx: &VolumeContext,
    ns: &str,
    volume: &str,
    claim: &str,
    read_only: bool,
    owner_uid: Option<&str>,
) -> Result<PreparedVolume, VolumeError> {
    let (pvc, pv) = sources::bound_volume(&ctx.client, ns, claim)
        .await
        .map_err(|m| setup_err(volume, m))?;
    if let Some(uid) = owner_uid {
        let owned = pvc
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid);
        if !owned {
            return Err(setup_err(
                volume,
                format!("PVC {ns}/{claim} was not created for pod (pod is not owner)"),
            ));
        }
    }
    let spec = pv.spec.unwrap_or_default();
    let pv_name = pv.metadata.name.unwrap_or_default();
    let pv_read_only = spec
        .access_modes
        .as_ref()
        .is_some_and(|m| m.len() == 1 && m[0] == "ReadOnlyMany");
    let path = if let Some(hp) = spec.host_path {
        let p = PathBuf::from(hp.path);
        host::check_host_path(&p, hp.type_.as_deref().unwrap_or(""))
            .map_err(|m| setup_err(volume, m))?;
        p
    } else if let Some(local) = spec.local {
        let p = PathBuf::from(local.path);
        if !p.exists() {
            return Err(setup_err(
                volume,
                format!("path \"{}\" does not exist", p.display()),
            ));
        }
        p
    } else {
        return Err(setup_err(
            volume,
            format!(
                "persistentvolume \"{pv_name}\" has a volume source this node cannot mount (only hostPath and local)"
            ),
        ));
    };
    Ok(PreparedVolume {
        host_path: path,
        read_only: read_only || pv_read_only,
    })
}

async fn projected_payload(
    ctx: &VolumeContext,
    pod: &Pod,
    dir: &Path,
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
) -> Result<Payload, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let default_mode = mode_bits(p.default_mode, DEFAULT_MODE);
    let mut out = Payload::new();
    for s in p.sources.iter().flatten() {
        let keys = match (&s.config_map, &s.secret) {
            (Some(cm), _) => Some((KeySource::ConfigMap, &cm.name, &cm.items, cm.optional)),
            (None, Some(sec)) => Some((KeySource::Secret, &sec.name, &sec.items, sec.optional)),
            (None, None) => None,
        };
        if let Some((kind, name, items, optional)) = keys {
            let data =
                sources::read_cached(&ctx.client, ctx.reads.as_deref(), kind, ns, name).await?;
            out.extend(plan::project_keys(
                kind,
                name,
                data.as_ref(),
                items.as_deref(),
                default_mode,
                optional == Some(true),
            )?);
        } else if let Some(d) = &s.downward_api {
            let items = d.items.clone().unwrap_or_default();
            let alloc = if plan::needs_allocatable(&items) {
                sources::node_allocatable(&ctx.client, &ctx.node_name)
                    .await
                    .unwrap_or_default()
            } else {
                BTreeMap::new()
            };
            out.extend(plan::project_downward(pod, &items, default_mode, &alloc)?);
        } else if let Some(t) = &s.service_account_token {
            plan::check_payload_path(&t.path)?;
            // the token currently in the volume, if still fresh, is kept
            let existing = std::fs::read_to_string(dir.join(&t.path)).ok();
            let now = chrono::Utc::now().timestamp();
            let token = match existing {
                Some(tok) if !plan::token_needs_refresh(Some(&tok), now) => tok.into_bytes(),
                _ => sources::request_token(&ctx.client, pod, t).await?,
            };
            out.insert(
                t.path.clone(),
                plan::FileProjection {
                    data: token,
                    mode: default_mode,
                },
            );
        } else if let Some(ctb) = &s.cluster_trust_bundle
            && ctb.optional != Some(true)
        {
            return Err("clusterTrustBundle projections are not supported on this node".into());
        }
    }
    Ok(out)
}

impl PreparedVolumes {
    /// The pod's directory (`<pods>/<uid>`).
    pub fn pod_dir(&self) -> &Path {
        &self.pod_dir
    }

    /// Host path of a set-up volume.
    pub fn host_path(&self, volume: &str) -> Option<&Path> {
        self.volumes.get(volume).map(|v| v.host_path.as_path())
    }

    /// CRI mounts for `container`'s `volumeMounts`, with `subPath` /
    /// `subPathExpr` resolved inside the volume.
    pub fn mounts_for(&self, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        let mut out = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let v = self
                .volumes
                .get(&vm.name)
                .ok_or_else(|| VolumeError::UnknownVolume {
                    volume: vm.name.clone(),
                    container: container.name.clone(),
                })?;
            let sub_err = |message: String| VolumeError::SubPath {
                volume_mount: vm.name.clone(),
                container: container.name.clone(),
                message,
            };
            let sub = match vm.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
                Some(expr) => {
                    let vars = plan::container_env_for_expansion(&self.pod, container);
                    plan::expand_vars(expr, &vars)
                }
                None => vm.sub_path.clone().unwrap_or_default(),
            };
            plan::check_sub_path(&sub).map_err(sub_err)?;
            let host_path = if sub.is_empty() {
                v.host_path.clone()
            } else {
                host::resolve_sub_path(&v.host_path, &sub).map_err(sub_err)?
            };
            let propagation = match vm.mount_propagation.as_deref() {
                Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => MountPropagation::PropagationBidirectional,
                _ => MountPropagation::PropagationPrivate,
            };
            out.push(Mount {
                container_path: vm.mount_path.clone(),
                host_path: host_path.to_string_lossy().into_owned(),
                readonly: vm.read_only == Some(true) || v.read_only,
                selinux_relabel: false,
                propagation: propagation as i32,
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// The managed `/etc/hosts` mount, once [`Self::write_etc_hosts`] wrote
    /// it. The caller skips it for a container that mounts `/etc/hosts`
    /// itself.
    pub fn etc_hosts_mount(&self) -> Option<Mount> {
        let path = self.pod_dir.join(ETC_HOSTS);
        path.is_file().then(|| Mount {
            container_path: "/etc/hosts".into(),
            host_path: path.to_string_lossy().into_owned(),
            readonly: false,
            selinux_relabel: false,
            propagation: MountPropagation::PropagationPrivate as i32,
            ..Default::default()
        })
    }

    /// Write the pod's `/etc/hosts` (cluster domain `cluster.local`).
    pub async fn write_etc_hosts(
        &self,
        pod: &Pod,
        pod_ip: Option<IpAddr>,
    ) -> Result<(), VolumeError> {
        self.write_etc_hosts_in_domain(pod, pod_ip, DEFAULT_CLUSTER_DOMAIN)
            .await
    }

    /// Write the pod's `/etc/hosts`: the pod's name on its IP (with its
    /// FQDN under `cluster_domain` when it has a subdomain) and its
    /// `hostAliases`; a hostNetwork pod gets the host's file plus aliases.
    /// Rewritten in place (same inode), so a running container sees it.
    pub async fn write_etc_hosts_in_domain(
        &self,
        pod: &Pod,
        pod_ip: Option<IpAddr>,
        cluster_domain: &str,
    ) -> Result<(), VolumeError> {
        let host_hosts = tokio::fs::read_to_string("/etc/hosts").await.ok();
        let content = plan::etc_hosts(pod, pod_ip, cluster_domain, host_hosts.as_deref());
        let path = self.pod_dir.join(ETC_HOSTS);
        let io = |source| VolumeError::Io {
            context: format!("cannot write {}", path.display()),
            source,
        };
        if tokio::fs::read_to_string(&path).await.ok().as_deref() == Some(content.as_str()) {
            return Ok(());
        }
        if tokio::fs::symlink_metadata(&path)
            .await
            .is_ok_and(|m| !m.is_file())
        {
            return Err(io(std::io::Error::other("not a regular file")));
        }
        tokio::fs::write(&path, content.as_bytes())
            .await
            .map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .await
            .map_err(io)
    }
}

/// Unmount the pod's tmpfs volumes and remove `<pods_dir>/<pod_uid>`
/// without following symlinks or crossing into other filesystems.
pub async fn teardown(pods_dir: &Path, pod_uid: &str) -> Result<(), VolumeError> {
    let uid = checked_uid(pod_uid)?;
    let pod_dir = pods_dir.join(uid);
    tokio::task::spawn_blocking(move || {
        if std::fs::symlink_metadata(&pod_dir).is_err() {
            return Ok(());
        }
        host::unmount_below(&pod_dir).map_err(|source| VolumeError::Io {
            context: format!("cannot unmount volumes of {}", pod_dir.display()),
            source,
        })?;
        host::remove_tree(&pod_dir).map_err(|source| VolumeError::Io {
            context: format!("cannot remove {}", pod_dir.display()),
            source,
        })
    })
    .await
    .map_err(|e| VolumeError::Io {
        context: "teardown task".into(),
        source: std::io::Error::other(e),
    })?
}

#[cfg(test)]
mod tests;
