//! OCI image model, pure: descriptors and media types, image reference
//! normalisation, the built-in pause image, and import plans for image
//! tarballs (OCI layout or `docker save`) computed from a scan of the tar.
//!
//! Invariants: everything here is deterministic (same input bytes, same
//! digests) and does no I/O; a malformed tarball is an `Err(String)` saying
//! what is wrong, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Annotation containerd reads for an image's full name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation: a full reference, or only a tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// The parts of a manifest or index this module needs.
#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// One entry of a `docker save` `manifest.json`.
#[derive(Debug, Deserialize)]
struct DockerSaveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The OCI architecture name of the platform skiff was built for.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// Where the bytes of a blob come from during an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobSource {
    Memory(Vec<u8>),
    /// A member of the tarball, streamed in a second pass.
    TarEntry(String),
}

/// A blob to put in containerd's content store. `labels` are the garbage
/// collection references to its children (manifests and indexes only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: i64,
    pub source: BlobSource,
    pub labels: BTreeMap<String, String>,
}

/// An image ready to import: its name, its target, and every blob it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePlan {
    pub name: String,
    pub target: Descriptor,
    pub blobs: Vec<Blob>,
    /// Labels of the containerd image record.
    pub labels: BTreeMap<String, String>,
}

/// Image label recording which pause executable the pause image was built
/// from, so a restart can skip building it (gzip) when nothing changed.
pub const LABEL_PAUSE_BINARY: &str = "skiff.io/pause-binary";

// ---------------------------------------------------------------------------
// Image references

/// Normalises an image reference the way containerd's CRI and Docker do:
/// `busybox` → `docker.io/library/busybox:latest`, `foo/bar:1` →
/// `docker.io/foo/bar:1`, `reg.example:5000/x@sha256:…` unchanged. `None`
/// for something that is not a valid reference.
pub fn normalize_reference(reference: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.is_empty() || reference.len() > 4096 {
        return None;
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (repo, tag) = match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    let (domain, path) = match repo.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_string())
        }
        _ => ("docker.io", repo.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let path_ok = !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        });
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !path_ok || !domain_ok {
        return None;
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            let tag_ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !tag_ok {
                return None;
            }
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        let (alg, hex) = d.split_once(':')?;
        if alg != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out.push('@');
        out.push_str(d);
    }
    Some(out)
}

/// The name an OCI index entry gives its image: `io.containerd.image.name`,
/// else `org.opencontainers.image.ref.name` when that is a full reference
/// (a bare tag such as `1.0` names nothing without a repository).
pub fn name_from_annotations(annotations: &BTreeMap<String, String>) -> Option<String> {
    if let Some(n) = annotations.get(ANNOTATION_IMAGE_NAME) {
        return normalize_reference(n);
    }
    let r = annotations.get(ANNOTATION_REF_NAME)?;
    if r.contains('/') || r.contains(':') || r.contains('@') {
        normalize_reference(r)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Garbage-collection labels

/// containerd's GC keeps a blob alive only if an image or another blob's
/// `containerd.io/gc.ref.content.*` label points at it: the labels a
/// manifest (config + layers) or an index (its manifests) must carry.
pub fn gc_labels(manifest_json: &[u8]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Ok(m) = serde_json::from_slice::<Manifest>(manifest_json) else {
        return labels;
    };
    if let Some(c) = &m.config {
        labels.insert(
            "containerd.io/gc.ref.content.config".to_string(),
            c.digest.clone(),
        );
    }
    for (i, l) in m.layers.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.clone(),
        );
    }
    for (i, d) in m.manifests.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.m.{i}"),
            d.digest.clone(),
        );
    }
    labels
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

// ---------------------------------------------------------------------------
// The built-in pause image

/// Builds the pause image around a static pause executable: one gzip layer
/// holding `/pause` (mode 0755, owner 0:0, mtime 0), a config with
/// `Entrypoint ["/pause"]`, and an OCI manifest. Deterministic.
pub fn pause_image(name: &str, binary: &[u8], arch: &str) -> Result<ImagePlan, String> {
    let layer_tar = single_file_tar("pause", binary, 0o755)?;
    let diff_id = sha256_digest(&layer_tar);
    let layer = gzip(&layer_tar)?;
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": ["/pause"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .map_err(|e| e.to_string())?;
    let config_desc = plain_descriptor(OCI_CONFIG, &config);
    let layer_desc = plain_descriptor(OCI_LAYER_GZIP, &layer);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    }))
    .map_err(|e| e.to_string())?;
    let target = plain_descriptor(OCI_MANIFEST, &manifest);
    let labels = gc_labels(&manifest);
    Ok(ImagePlan {
        name: name.to_string(),
        labels: BTreeMap::from([(LABEL_PAUSE_BINARY.to_string(), sha256_digest(binary))]),
        target: target.clone(),
        blobs: vec![
            memory_blob(&layer_desc, layer, BTreeMap::new()),
            memory_blob(&config_desc, config, BTreeMap::new()),
            memory_blob(&target, manifest, labels),
        ],
    })
}

fn plain_descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: sha256_digest(data),
        size: data.len() as i64,
        annotations: BTreeMap::new(),
        platform: None,
    }
}

fn memory_blob(desc: &Descriptor, data: Vec<u8>, labels: BTreeMap<String, String>) -> Blob {
    Blob {
        digest: desc.digest.clone(),
        size: desc.size,
        source: BlobSource::Memory(data),
        labels,
    }
}

fn single_file_tar(path: &str, data: &[u8], mode: u32) -> Result<Vec<u8>, String> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path).map_err(|e| e.to_string())?;
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append(&header, data).map_err(|e| e.to_string())?;
    builder.into_inner().map_err(|e| e.to_string())
}

/// gzip without a file name or timestamp, so the bytes depend on the input only.
fn gzip(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).map_err(|e| e.to_string())?;
    enc.finish().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// Tarball plans

/// What the first pass over a tarball learnt about one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScannedEntry {
    pub size: u64,
    /// `sha256:<hex>`: from the name under `blobs/sha256/`, else hashed.
    pub digest: String,
    /// The bytes, kept for small JSON members (manifests, configs, indexes).
    pub data: Option<Vec<u8>>,
    pub compression: Compression,
    /// The member holding the bytes when this path is a link to another
    /// (`docker save` links repeated layers); empty for a regular file.
    pub link_to: String,
}

impl ScannedEntry {
    /// Where to read this blob from: inline bytes or a tar member.
    fn source(&self, path: &str) -> BlobSource {
        match (&self.data, self.link_to.is_empty()) {
            (Some(d), _) => BlobSource::Memory(d.clone()),
            (None, true) => BlobSource::TarEntry(path.to_string()),
            (None, false) => BlobSource::TarEntry(self.link_to.clone()),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognises a compressed layer by its magic bytes.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Members of a tarball by path (leading `./` removed).
pub type Scan = BTreeMap<String, ScannedEntry>;

/// Path of a member normalised for lookups.
pub fn clean_path(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    p.to_string()
}

/// Digest a member under `blobs/sha256/` is named for, if any.
pub fn digest_from_blob_path(path: &str) -> Option<String> {
    let hex = path.strip_prefix("blobs/sha256/")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// Images a scanned tarball holds: an OCI layout when `index.json` is
/// there (containerd's preference too), else a `docker save` archive.
/// `arch` filters multi-platform indexes: other platforms' manifests are
/// referenced but their blobs are not required.
pub fn plan_tarball(scan: &Scan, arch: &str) -> Result<Vec<ImagePlan>, String> {
    if scan.contains_key("index.json") {
        plan_oci_layout(scan, arch)
    } else if scan.contains_key("manifest.json") {
        plan_docker_save(scan)
    } else {
        Err("neither an OCI layout (index.json) nor a docker save archive (manifest.json)".into())
    }
}

fn json_member<'a>(scan: &'a Scan, path: &str) -> Result<&'a [u8], String> {
    scan.get(path)
        .ok_or_else(|| format!("{path} is missing"))?
        .data
        .as_deref()
        .ok_or_else(|| format!("{path} is not a JSON document of reasonable size"))
}

fn plan_oci_layout(scan: &Scan, arch: &str) -> Result<Vec<ImagePlan>, String> {
    let index: Manifest = serde_json::from_slice(json_member(scan, "index.json")?)
        .map_err(|e| format!("index.json: {e}"))?;
    let by_digest: BTreeMap<&str, &str> = scan
        .keys()
        .filter(|p| digest_from_blob_path(p).is_some())
        .map(|p| (&p["blobs/sha256/".len()..], p.as_str()))
        .collect();
    let mut plans = Vec::new();
    for desc in &index.manifests {
        let Some(name) = name_from_annotations(&desc.annotations) else {
            tracing::warn!(digest = %desc.digest, "index.json entry has no image name annotation; skipped");
            continue;
        };
        let mut blobs = Vec::new();
        let mut seen = BTreeSet::new();
        collect_oci(scan, &by_digest, desc, arch, true, &mut blobs, &mut seen)?;
        let mut target = desc.clone();
        target.annotations.clear();
        target.platform = None;
        plans.push(ImagePlan {
            name,
            target,
            blobs,
            labels: BTreeMap::new(),
        });
    }
    if plans.is_empty() {
        return Err("index.json names no image (no io.containerd.image.name annotation)".into());
    }
    Ok(plans)
}

fn collect_oci(
    scan: &Scan,
    by_digest: &BTreeMap<&str, &str>,
    desc: &Descriptor,
    arch: &str,
    required: bool,
    blobs: &mut Vec<Blob>,
    seen: &mut BTreeSet<String>,
) -> Result<(), String> {
    if !seen.insert(desc.digest.clone()) {
        return Ok(());
    }
    let hex = desc.digest.strip_prefix("sha256:").unwrap_or("");
    let Some(path) = by_digest.get(hex) else {
        if required {
            return Err(format!(
                "blob {} ({}) is missing",
                desc.digest, desc.media_type
            ));
        }
        return Ok(());
    };
    let entry = &scan[*path];
    if desc.size >= 0 && entry.size != desc.size as u64 {
        return Err(format!(
            "blob {} has {} bytes, its descriptor says {}",
            desc.digest, entry.size, desc.size
        ));
    }
    let is_parent = is_index(&desc.media_type) || is_manifest(&desc.media_type);
    let mut labels = BTreeMap::new();
    if is_parent {
        let data = entry
            .data
            .as_deref()
            .ok_or_else(|| format!("{} {} is not a JSON document", desc.media_type, desc.digest))?;
        let m: Manifest =
            serde_json::from_slice(data).map_err(|e| format!("{}: {e}", desc.digest))?;
        labels = gc_labels(data);
        if is_index(&desc.media_type) || is_index(&m.media_type) {
            for child in &m.manifests {
                let wanted = child
                    .platform
                    .as_ref()
                    .is_none_or(|p| p.os == "linux" && p.architecture == arch);
                collect_oci(
                    scan,
                    by_digest,
                    child,
                    arch,
                    required && wanted,
                    blobs,
                    seen,
                )?;
            }
        } else {
            let config = m
                .config
                .as_ref()
                .ok_or_else(|| format!("manifest {} has no config", desc.digest))?;
            collect_oci(scan, by_digest, config, arch, required, blobs, seen)?;
            for layer in &m.layers {
                collect_oci(scan, by_digest, layer, arch, required, blobs, seen)?;
            }
        }
    }
    blobs.push(Blob {
        digest: desc.digest.clone(),
        size: entry.size as i64,
        source: entry.source(path),
        labels,
    });
    Ok(())
}

fn plan_docker_save(scan: &Scan) -> Result<Vec<ImagePlan>, String> {
    let entries: Vec<DockerSaveEntry> = serde_json::from_slice(json_member(scan, "manifest.json")?)
        .map_err(|e| format!("manifest.json: {e}"))?;
    let mut plans = Vec::new();
    for entry in entries {
        let config_path = clean_path(&entry.config);
        let config = json_member(scan, &config_path)?;
        let config_desc = plain_descriptor(OCI_CONFIG, config);
        let mut blobs = vec![memory_blob(&config_desc, config.to_vec(), BTreeMap::new())];
        let mut layers = Vec::new();
        for layer_path in &entry.layers {
            let layer_path = clean_path(layer_path);
            let member = scan
                .get(&layer_path)
                .ok_or_else(|| format!("layer {layer_path} is missing"))?;
            let media_type = match member.compression {
                Compression::None => OCI_LAYER,
                Compression::Gzip => OCI_LAYER_GZIP,
                Compression::Zstd => OCI_LAYER_ZSTD,
            };
            let desc = Descriptor {
                media_type: media_type.to_string(),
                digest: member.digest.clone(),
                size: member.size as i64,
                annotations: BTreeMap::new(),
                platform: None,
            };
            if !blobs.iter().any(|b| b.digest == desc.digest) {
                blobs.push(Blob {
                    digest: desc.digest.clone(),
                    size: desc.size,
                    source: member.source(&layer_path),
                    labels: BTreeMap::new(),
                });
            }
            layers.push(desc);
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layers,
        }))
        .map_err(|e| e.to_string())?;
        let target = plain_descriptor(OCI_MANIFEST, &manifest);
        let labels = gc_labels(&manifest);
        blobs.push(memory_blob(&target, manifest, labels));
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            tracing::warn!(config = %config_path, "docker save entry has no RepoTags; skipped");
        }
        for tag in tags {
            let name = normalize_reference(&tag)
                .ok_or_else(|| format!("RepoTags entry {tag:?} is not an image reference"))?;
            plans.push(ImagePlan {
                name,
                target: target.clone(),
                blobs: blobs.clone(),
                labels: BTreeMap::new(),
            });
        }
    }
    if plans.is_empty() {
        return Err("manifest.json names no image (no RepoTags)".into());
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        let cases = [
            ("busybox", Some("docker.io/library/busybox:latest")),
            ("busybox:1.36", Some("docker.io/library/busybox:1.36")),
            ("foo/bar:1", Some("docker.io/foo/bar:1")),
            ("index.docker.io/foo/bar", Some("docker.io/foo/bar:latest")),
            ("skiff.test/busybox:1", Some("skiff.test/busybox:1")),
            ("localhost/x", Some("localhost/x:latest")),
            ("reg.example:5000/a/b:v1", Some("reg.example:5000/a/b:v1")),
            (
                "quay.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                Some(
                    "quay.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                ),
            ),
            ("quay.io/x/y@sha256:short", None),
            ("Upper/case", None),
            ("", None),
            ("foo:", None),
            ("foo:-bad", None),
            ("a//b", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_reference(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn names_come_from_containerd_annotation_or_full_ref_name() {
        let ann = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases = [
            (
                ann(&[
                    (ANNOTATION_IMAGE_NAME, "skiff.test/a:1"),
                    (ANNOTATION_REF_NAME, "1"),
                ]),
                Some("skiff.test/a:1"),
            ),
            (ann(&[(ANNOTATION_REF_NAME, "1")]), None),
            (
                ann(&[(ANNOTATION_REF_NAME, "busybox:1")]),
                Some("docker.io/library/busybox:1"),
            ),
            (ann(&[]), None),
        ];
        for (a, want) in cases {
            assert_eq!(name_from_annotations(&a).as_deref(), want, "{a:?}");
        }
    }

    #[test]
    fn pause_image_is_deterministic_and_self_consistent() {
        let a = pause_image("skiff.invalid/pause:1", b"\x7fELF fake", "amd64").unwrap();
        let b = pause_image("skiff.invalid/pause:1", b"\x7fELF fake", "amd64").unwrap();
        assert_eq!(a, b);
        let c = pause_image("skiff.invalid/pause:1", b"\x7fELF other", "amd64").unwrap();
        assert_ne!(a.target.digest, c.target.digest);
        for blob in &a.blobs {
            let BlobSource::Memory(data) = &blob.source else {
                panic!("in memory")
            };
            assert_eq!(sha256_digest(data), blob.digest);
            assert_eq!(data.len() as i64, blob.size);
        }
        let BlobSource::Memory(manifest) = &a.blobs[2].source else {
            panic!()
        };
        assert_eq!(a.target.digest, sha256_digest(manifest));
        let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        assert_eq!(m["config"]["digest"], a.blobs[1].digest.as_str());
        assert_eq!(m["layers"][0]["digest"], a.blobs[0].digest.as_str());
        assert_eq!(m["layers"][0]["mediaType"], OCI_LAYER_GZIP);
        assert_eq!(
            a.blobs[2].labels["containerd.io/gc.ref.content.config"],
            a.blobs[1].digest
        );
        assert_eq!(
            a.blobs[2].labels["containerd.io/gc.ref.content.l.0"],
            a.blobs[0].digest
        );

        // The config's diff_id is the digest of the uncompressed layer, which
        // holds exactly /pause, 0755, root-owned.
        let BlobSource::Memory(config) = &a.blobs[1].source else {
            panic!()
        };
        let config: serde_json::Value = serde_json::from_slice(config).unwrap();
        assert_eq!(config["config"]["Entrypoint"], json!(["/pause"]));
        assert_eq!(config["architecture"], "amd64");
        let BlobSource::Memory(layer) = &a.blobs[0].source else {
            panic!()
        };
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut raw)
            .unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            sha256_digest(&raw).as_str()
        );
        let mut archive = tar::Archive::new(&raw[..]);
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, vec![("pause".to_string(), 0o755, 0, 9)]);
    }

    fn json_entry(v: serde_json::Value) -> (Vec<u8>, ScannedEntry) {
        let data = serde_json::to_vec(&v).unwrap();
        let e = ScannedEntry {
            size: data.len() as u64,
            digest: sha256_digest(&data),
            data: Some(data.clone()),
            ..Default::default()
        };
        (data, e)
    }

    fn blob_path(digest: &str) -> String {
        format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
    }

    /// An OCI layout with an index of two platforms; only amd64 is present.
    fn oci_scan() -> (Scan, String) {
        let mut scan = Scan::new();
        let layer = ScannedEntry {
            size: 1000,
            digest: format!("sha256:{}", "a".repeat(64)),
            compression: Compression::Gzip,
            ..Default::default()
        };
        scan.insert(blob_path(&layer.digest), layer.clone());
        let (_, config) = json_entry(json!({"architecture": "amd64", "os": "linux"}));
        scan.insert(blob_path(&config.digest), config.clone());
        let (_, manifest) = json_entry(json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": 1000}],
        }));
        scan.insert(blob_path(&manifest.digest), manifest.clone());
        let (_, index) = json_entry(json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": manifest.digest, "size": manifest.size,
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": OCI_MANIFEST, "digest": format!("sha256:{}", "b".repeat(64)), "size": 5,
                 "platform": {"architecture": "arm64", "os": "linux"}},
            ],
        }));
        scan.insert(blob_path(&index.digest), index.clone());
        let (_, top) = json_entry(json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_INDEX, "digest": index.digest, "size": index.size,
                           "annotations": {ANNOTATION_IMAGE_NAME: "skiff.test/multi:1"}}],
        }));
        scan.insert("index.json".into(), top);
        (scan, index.digest)
    }

    #[test]
    fn oci_layout_plan_walks_index_for_the_host_platform() {
        let (scan, index_digest) = oci_scan();
        let plans = plan_tarball(&scan, "amd64").unwrap();
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(p.name, "skiff.test/multi:1");
        assert_eq!(p.target.digest, index_digest);
        assert!(p.target.annotations.is_empty());
        // children first, target last; the big layer streams from the tar
        assert_eq!(p.blobs.len(), 4);
        assert_eq!(p.blobs.last().unwrap().digest, index_digest);
        assert_eq!(
            p.blobs[1].source,
            BlobSource::TarEntry(blob_path(&format!("sha256:{}", "a".repeat(64))))
        );
        assert!(
            p.blobs[3]
                .labels
                .contains_key("containerd.io/gc.ref.content.m.1")
        );

        // The same layout for an arm64 host lacks the arm64 manifest.
        let err = plan_tarball(&scan, "arm64").unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn bad_tarballs_are_errors() {
        let (mut scan, _) = oci_scan();
        scan.retain(|k, _| !k.starts_with("blobs/sha256/a"));
        assert!(
            plan_tarball(&scan, "amd64")
                .unwrap_err()
                .contains("missing")
        );

        let mut scan = Scan::new();
        assert!(
            plan_tarball(&scan, "amd64")
                .unwrap_err()
                .contains("neither")
        );
        scan.insert(
            "index.json".into(),
            ScannedEntry {
                data: Some(b"{not json".to_vec()),
                ..Default::default()
            },
        );
        assert!(
            plan_tarball(&scan, "amd64")
                .unwrap_err()
                .starts_with("index.json")
        );
    }

    #[test]
    fn docker_save_plan_builds_a_manifest() {
        let mut scan = Scan::new();
        let (_, config) = json_entry(json!({"architecture": "amd64", "os": "linux", "rootfs": {}}));
        scan.insert("abc.json".into(), config.clone());
        let layer = ScannedEntry {
            size: 2048,
            digest: format!("sha256:{}", "c".repeat(64)),
            ..Default::default()
        };
        scan.insert("l1/layer.tar".into(), layer.clone());
        let (_, mf) = json_entry(
            json!([{"Config": "abc.json", "RepoTags": ["busybox:1", "skiff.test/bb:2"], "Layers": ["./l1/layer.tar"]}]),
        );
        scan.insert("manifest.json".into(), mf);
        let plans = plan_tarball(&scan, "amd64").unwrap();
        let names: Vec<_> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["docker.io/library/busybox:1", "skiff.test/bb:2"]);
        let p = &plans[0];
        assert_eq!(p.target.media_type, OCI_MANIFEST);
        let BlobSource::Memory(manifest) = &p.blobs.last().unwrap().source else {
            panic!()
        };
        assert_eq!(sha256_digest(manifest), p.target.digest);
        let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], OCI_LAYER);
        assert_eq!(m["layers"][0]["digest"], layer.digest.as_str());
        assert_eq!(m["config"]["digest"], config.digest.as_str());
        assert_eq!(
            p.blobs[1].source,
            BlobSource::TarEntry("l1/layer.tar".into())
        );
    }
}
