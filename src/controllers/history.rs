//! ControllerRevision helpers shared by the StatefulSet and DaemonSet
//! controllers (upstream `pkg/controller/history` plus the revision parts of
//! `statefulset` and `daemon`).
//!
//! Owns: the revision payload (`{"spec":{"template":{…,"$patch":"replace"}}}`),
//! its stable name/hash (`<owner>-<hash>`, FNV-32a of the payload and the
//! collision count, encoded like upstream `SafeEncodeString`), revision
//! numbering (max + 1; an equal older revision is reused and renumbered),
//! hash-collision resolution against the known revisions, and history
//! truncation to `revisionHistoryLimit` while keeping live revisions.
//!
//! Invariants: the same template and collision count always give the same
//! name; two revisions are "equal" when their payloads are equal as JSON
//! (key order ignored). Nothing here mutates its inputs.
//!
//! Must not: talk to the API, read clocks, or panic on odd input (missing
//! data, labels or names are normal).

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Label carrying the revision: the revision *name* on StatefulSet pods, the
/// bare hash on DaemonSet pods and on every ControllerRevision.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// Default `spec.revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// Longest owner-name prefix kept in a revision name (upstream: 253 - 30).
const MAX_PREFIX_LEN: usize = 223;
/// Alphabet of upstream `rand.SafeEncodeString` (no vowels, no confusables).
const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The object owning a revision history (a StatefulSet or DaemonSet).
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    /// The owner's metadata: name, namespace, uid and annotations are used.
    pub meta: &'a ObjectMeta,
    pub template: &'a PodTemplateSpec,
}

/// The payload upstream stores in a revision: a strategic-merge patch that
/// replaces the whole pod template.
pub fn patch_data(template: &PodTemplateSpec) -> Value {
    let mut tpl = match serde_json::to_value(template) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    tpl.insert("$patch".into(), Value::String("replace".into()));
    json!({ "spec": { "template": Value::Object(tpl) } })
}

/// The pod template recorded in a revision (None when the payload is not a
/// template patch).
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut tpl = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Value::Object(m) = &mut tpl {
        m.remove("$patch");
    }
    serde_json::from_value(tpl).ok()
}

/// Whether a revision records exactly this template.
pub fn matches_template(rev: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    rev.data
        .as_ref()
        .is_some_and(|d| d.0 == patch_data(template))
}

fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Stable hash of a payload and collision count, in upstream's alphabet.
pub fn hash_data(data: &Value, collision_count: i32) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if collision_count != 0 {
        bytes.extend_from_slice(&(collision_count as u32).to_le_bytes());
    }
    fnv32a(&bytes)
        .to_string()
        .bytes()
        .map(|b| SAFE_ALPHANUMS[usize::from(b) % SAFE_ALPHANUMS.len()] as char)
        .collect()
}

/// `<prefix>-<hash>`, the prefix cut to 223 bytes like upstream.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut cut = prefix.len().min(MAX_PREFIX_LEN);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{}", &prefix[..cut], hash)
}

/// A new revision of `owner`'s template: template labels plus the hash
/// label, owner's annotations, a controller owner reference.
pub fn new_revision(owner: &Owner, revision: i64, collision_count: i32) -> ControllerRevision {
    let data = patch_data(owner.template);
    let hash = hash_data(&data, collision_count);
    let mut labels: BTreeMap<String, String> = owner
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
    let name = owner.meta.name.as_deref().unwrap_or_default();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(name, &hash)),
            namespace: owner.meta.namespace.clone(),
            labels: Some(labels),
            annotations: owner.meta.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![crate::controllers::podutil::owner_ref(
                owner.api_version,
                owner.kind,
                name,
                owner.meta.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Revisions ordered like upstream: by number, then creation time, then name.
pub fn sorted(revisions: &[ControllerRevision]) -> Vec<&ControllerRevision> {
    let mut v: Vec<&ControllerRevision> = revisions.iter().collect();
    v.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
                ta.cmp(&tb)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    v
}

/// The number the next revision gets: highest + 1, or 1 for no history.
pub fn next_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Whether two revisions record the same payload (hash labels, when both
/// carry one, must agree too, as upstream `EqualRevision`).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let label = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL))
            .cloned()
    };
    if let (Some(la), Some(lb)) = (label(a), label(b))
        && la != lb
    {
        return false;
    }
    match (&a.data, &b.data) {
        (Some(da), Some(db)) => da.0 == db.0,
        (None, None) => true,
        _ => false,
    }
}

/// What must happen to the history for the update revision to exist.
#[derive(Debug, Clone, PartialEq)]
pub enum RevisionChange {
    /// Create this revision.
    Create(Box<ControllerRevision>),
    /// An equal, older revision is reused: set its `revision` number.
    Renumber { name: String, revision: i64 },
}

/// The update revision of an owner and how to get there.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The update revision as it is once `change` is applied.
    pub update: ControllerRevision,
    pub change: Option<RevisionChange>,
    /// The collision count to store in the owner's status.
    pub collision_count: i32,
}

/// Finds or plans the revision recording `owner`'s current template
/// (upstream StatefulSet `getStatefulSetRevisions` / DaemonSet
/// `constructHistory`): the newest equal revision is reused (renumbered to
/// max + 1 unless it already is the newest); otherwise a new one is made,
/// bumping the collision count while its name is taken by a different
/// payload among `revisions`.
pub fn resolve(owner: &Owner, revisions: &[ControllerRevision], collision_count: i32) -> Resolved {
    let next = next_revision(revisions);
    let data = patch_data(owner.template);
    let ordered = sorted(revisions);
    let newest_equal = ordered
        .iter()
        .rev()
        .find(|r| r.data.as_ref().is_some_and(|d| d.0 == data));
    if let Some(eq) = newest_equal {
        let is_last = ordered.last().is_some_and(|l| std::ptr::eq(*l, *eq));
        if is_last {
            return Resolved {
                update: (*eq).clone(),
                change: None,
                collision_count,
            };
        }
        let mut update = (*eq).clone();
        update.revision = next;
        return Resolved {
            change: Some(RevisionChange::Renumber {
                name: update.metadata.name.clone().unwrap_or_default(),
                revision: next,
            }),
            update,
            collision_count,
        };
    }
    let mut count = collision_count;
    let mut candidate = new_revision(owner, next, count);
    for _ in 0..1000 {
        let taken = revisions
            .iter()
            .any(|r| r.metadata.name == candidate.metadata.name);
        if !taken {
            break;
        }
        count = count.wrapping_add(1);
        candidate = new_revision(owner, next, count);
    }
    Resolved {
        update: candidate.clone(),
        change: Some(RevisionChange::Create(Box::new(candidate))),
        collision_count: count,
    }
}

/// `revisions` as they are after `change` (renumbered or with the new one).
pub fn apply_change(
    revisions: &[ControllerRevision],
    change: Option<&RevisionChange>,
) -> Vec<ControllerRevision> {
    let mut out = revisions.to_vec();
    match change {
        Some(RevisionChange::Create(cr)) => out.push((**cr).clone()),
        Some(RevisionChange::Renumber { name, revision }) => {
            for r in out.iter_mut() {
                if r.metadata.name.as_deref() == Some(name) {
                    r.revision = *revision;
                }
            }
        }
        None => {}
    }
    out
}

/// How the history limit is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// StatefulSet: only non-live revisions count against the limit.
    NonLive,
    /// DaemonSet: every revision but the current one counts, but only
    /// non-live ones are deleted.
    AllButCurrent,
}

/// Names of revisions to delete so the history fits in `limit` (negative
/// limits count as 0): the oldest ones not accepted by `is_live`.
pub fn prune<F>(
    revisions: &[ControllerRevision],
    is_live: F,
    limit: i32,
    mode: LimitMode,
    current: Option<&str>,
) -> Vec<String>
where
    F: Fn(&ControllerRevision) -> bool,
{
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let ordered = sorted(revisions);
    let dead: Vec<&ControllerRevision> = ordered.iter().copied().filter(|r| !is_live(r)).collect();
    let counted = match mode {
        LimitMode::NonLive => dead.len(),
        LimitMode::AllButCurrent => ordered
            .iter()
            .filter(|r| current.is_none() || r.metadata.name.as_deref() != current)
            .count(),
    };
    let excess = counted.saturating_sub(limit);
    dead.iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            ..Default::default()
        }
    }

    fn rev(owner: &Owner, n: i64) -> ControllerRevision {
        new_revision(owner, n, 0)
    }

    #[test]
    fn payload_roundtrip_and_naming() {
        let t = template("nginx:1");
        let m = meta();
        let owner = Owner {
            api_version: "apps/v1",
            kind: "StatefulSet",
            meta: &m,
            template: &t,
        };
        let r = new_revision(&owner, 1, 0);
        let data = &r.data.as_ref().unwrap().0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_of(&r), Some(t.clone()));
        let hash = r.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL].clone();
        assert_eq!(
            r.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        assert!(hash.bytes().all(|b| SAFE_ALPHANUMS.contains(&b)));
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "web");
        // stable, and sensitive to template and collision count
        assert_eq!(new_revision(&owner, 7, 0).metadata.name, r.metadata.name);
        assert_ne!(new_revision(&owner, 1, 1).metadata.name, r.metadata.name);
        let t2 = template("nginx:2");
        let o2 = Owner {
            template: &t2,
            ..owner
        };
        assert_ne!(new_revision(&o2, 1, 0).metadata.name, r.metadata.name);
        assert!(matches_template(&r, &t) && !matches_template(&r, &t2));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn resolve_cases() {
        let m = meta();
        let (t1, t2) = (template("a"), template("b"));
        let o1 = Owner {
            api_version: "apps/v1",
            kind: "StatefulSet",
            meta: &m,
            template: &t1,
        };
        let o2 = Owner {
            template: &t2,
            ..o1
        };
        // empty history: create revision 1
        let r = resolve(&o1, &[], 0);
        assert!(matches!(r.change, Some(RevisionChange::Create(_))));
        assert_eq!(r.update.revision, 1);
        // unchanged: reuse the newest
        let h = vec![rev(&o1, 1)];
        let r = resolve(&o1, &h, 0);
        assert_eq!(r.change, None);
        assert_eq!(r.update.metadata.name, h[0].metadata.name);
        // changed: new revision 2
        let r = resolve(&o2, &h, 0);
        assert_eq!(r.update.revision, 2);
        // rollback: reuse revision 1, renumbered to 3
        let h = vec![rev(&o1, 1), rev(&o2, 2)];
        let r = resolve(&o1, &h, 0);
        assert_eq!(
            r.change,
            Some(RevisionChange::Renumber {
                name: h[0].metadata.name.clone().unwrap(),
                revision: 3
            })
        );
        // collision: name taken by another payload bumps the count
        let mut fake = rev(&o2, 1);
        fake.metadata.name = rev(&o1, 1).metadata.name;
        let r = resolve(&o1, &[fake], 0);
        assert_eq!(r.collision_count, 1);
        assert_eq!(
            r.update.metadata.name,
            new_revision(&o1, 2, 1).metadata.name
        );
    }

    #[test]
    fn prune_keeps_live_and_limit() {
        let m = meta();
        let ts: Vec<PodTemplateSpec> = (0..5).map(|i| template(&format!("i{i}"))).collect();
        let revs: Vec<ControllerRevision> = ts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let o = Owner {
                    api_version: "apps/v1",
                    kind: "StatefulSet",
                    meta: &m,
                    template: t,
                };
                rev(&o, i as i64 + 1)
            })
            .collect();
        let name = |i: usize| revs[i].metadata.name.clone().unwrap();
        let live = |r: &ControllerRevision| r.revision == 1 || r.revision == 5;
        let cases: Vec<(i32, LimitMode, Vec<String>)> = vec![
            (10, LimitMode::NonLive, vec![]),
            (3, LimitMode::NonLive, vec![]),
            (1, LimitMode::NonLive, vec![name(1), name(2)]),
            (0, LimitMode::NonLive, vec![name(1), name(2), name(3)]),
            (2, LimitMode::AllButCurrent, vec![name(1), name(2)]),
        ];
        for (limit, mode, want) in cases {
            let cur = name(4);
            assert_eq!(
                prune(&revs, live, limit, mode, Some(&cur)),
                want,
                "limit {limit}"
            );
        }
    }
}
