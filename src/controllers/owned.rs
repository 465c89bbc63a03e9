//! Ownership helpers of the StatefulSet and DaemonSet controllers.
//!
//! `claim`: which objects an owner controls, adopting orphans its selector
//! matches and releasing controlled ones it no longer matches (upstream
//! `ControllerRefManager.ClaimObject`).
//!
//! `Inflight`: pods a controller created or deleted that the shared pod
//! informer has not shown yet. Their planners take "the pods as they are
//! now", so the shell lays these writes over the cached pods before planning
//! (a created pod is added, a deleted one gets a deletionTimestamp) and a
//! lagging cache never causes a second create or delete.
//!
//! Invariants: an in-flight entry is dropped once the cache shows the write
//! (the created name is cached; the deleted pod is gone, replaced or
//! terminating) or after five minutes. An owner being deleted neither adopts
//! nor releases; objects being deleted are never adopted or released.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};

use super::podutil;
use super::replicaset::plan::{OwnerPatch, adopt_patch, release_patch};

const TIMEOUT_SECONDS: i64 = 300;

#[derive(Default)]
struct Entry {
    /// name → (pod as the API server returned it, when)
    created: BTreeMap<String, (Pod, DateTime<Utc>)>,
    /// name → (uid, when)
    deleted: BTreeMap<String, (Option<String>, DateTime<Utc>)>,
}

/// In-flight writes per owner uid.
#[derive(Default)]
pub struct Inflight {
    owners: Mutex<HashMap<String, Entry>>,
}

fn expired(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - at > chrono::Duration::seconds(TIMEOUT_SECONDS)
}

impl Inflight {
    pub fn created(&self, owner: &str, pod: Pod, now: DateTime<Utc>) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut m = self.owners.lock().unwrap();
        let e = m.entry(owner.to_string()).or_default();
        e.deleted.remove(&name);
        e.created.insert(name, (pod, now));
    }

    pub fn deleted(&self, owner: &str, name: &str, uid: Option<String>, now: DateTime<Utc>) {
        let mut m = self.owners.lock().unwrap();
        let e = m.entry(owner.to_string()).or_default();
        e.created.remove(name);
        e.deleted.insert(name.to_string(), (uid, now));
    }

    pub fn forget(&self, owner: &str) {
        self.owners.lock().unwrap().remove(owner);
    }

    /// `cached` (the owner's pods in the informer) with the pending writes
    /// applied; entries the cache now reflects are dropped.
    pub fn overlay(&self, owner: &str, mut cached: Vec<Pod>, now: DateTime<Utc>) -> Vec<Pod> {
        let mut m = self.owners.lock().unwrap();
        let Some(e) = m.get_mut(owner) else {
            return cached;
        };
        let find = |pods: &[Pod], name: &str| {
            pods.iter()
                .position(|p| p.metadata.name.as_deref() == Some(name))
        };
        e.created
            .retain(|name, (_, at)| !expired(*at, now) && find(&cached, name).is_none());
        e.deleted.retain(|name, (uid, at)| {
            if expired(*at, now) {
                return false;
            }
            match find(&cached, name) {
                None => false,
                Some(i) => {
                    let p = &cached[i];
                    let same = uid.is_none() || p.metadata.uid == *uid;
                    same && p.metadata.deletion_timestamp.is_none()
                }
            }
        });
        for (pod, _) in e.created.values() {
            cached.push(pod.clone());
        }
        for name in e.deleted.keys() {
            if let Some(i) = find(&cached, name) {
                cached[i].metadata.deletion_timestamp = Some(super::podutil::chrono_to_time(now));
            }
        }
        if e.created.is_empty() && e.deleted.is_empty() {
            m.remove(owner);
        }
        cached
    }
}

/// What an owner controls among `objs`, and the owner-reference patches
/// (adopt, release) to send first. `member` narrows the orphans that may be
/// adopted (a StatefulSet only adopts pods named after it).
pub fn claim<K>(
    objs: &[std::sync::Arc<K>],
    owner_ref: &OwnerReference,
    selector: &LabelSelector,
    owner_deleting: bool,
    member: impl Fn(&K) -> bool,
) -> (Vec<K>, Vec<Claim>)
where
    K: kube::Resource + Clone,
{
    let empty = BTreeMap::new();
    let mut owned = Vec::new();
    let mut patches = Vec::new();
    for o in objs {
        let meta = o.meta();
        let labels = meta.labels.as_ref().unwrap_or(&empty);
        let matches = podutil::selector_matches(selector, labels) && member(o);
        let deleting = meta.deletion_timestamp.is_some();
        match podutil::controller_ref(meta) {
            Some(r) if r.uid != owner_ref.uid => {}
            Some(_) if matches => owned.push((**o).clone()),
            Some(_) if owner_deleting || deleting => {}
            Some(_) => patches.push(Claim::Release(release_patch(meta, &owner_ref.uid))),
            None if matches && !owner_deleting && !deleting => {
                patches.push(Claim::Adopt(adopt_patch(meta, owner_ref.clone())));
            }
            None => {}
        }
    }
    (owned, patches)
}

/// An owner-reference patch to apply before planning.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// On success the object (as returned) is owned.
    Adopt(OwnerPatch),
    Release(OwnerPatch),
}

/// Applies `patches` through `api` (strategic merge, uid in the body);
/// returns the adopted objects. Objects gone or replaced meanwhile are
/// skipped.
pub async fn apply_claims<K>(api: &kube::Api<K>, patches: &[Claim]) -> Result<Vec<K>, super::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut adopted = Vec::new();
    for c in patches {
        let (Claim::Adopt(p) | Claim::Release(p)) = c;
        let pp = kube::api::PatchParams::default();
        match api
            .patch(&p.name, &pp, &kube::api::Patch::Strategic(&p.patch))
            .await
        {
            Ok(o) => {
                if matches!(c, Claim::Adopt(_)) {
                    adopted.push(o);
                }
            }
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(adopted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn overlays_until_the_cache_catches_up() {
        let f = Inflight::default();
        let now = Utc::now();
        f.created("o", pod("a", "ua"), now);
        f.deleted("o", "b", Some("ub".into()), now);
        let out = f.overlay("o", vec![pod("b", "ub")], now);
        assert_eq!(out.len(), 2);
        assert!(out[0].metadata.deletion_timestamp.is_some());
        assert_eq!(out[1].metadata.name.as_deref(), Some("a"));
        // the cache shows both writes: nothing left to overlay
        let out = f.overlay("o", vec![pod("a", "ua")], now);
        assert_eq!(out.len(), 1);
        assert!(f.owners.lock().unwrap().is_empty());
        // a recreated pod of the same name is not marked deleted
        f.deleted("o", "c", Some("old".into()), now);
        let out = f.overlay("o", vec![pod("c", "new")], now);
        assert!(out[0].metadata.deletion_timestamp.is_none());
        // expiry
        f.created("o", pod("d", "ud"), now);
        let later = now + chrono::Duration::seconds(301);
        assert!(f.overlay("o", vec![], later).is_empty());
    }

    #[test]
    fn claim_adopts_releases_and_ignores() {
        let me = podutil::owner_ref("apps/v1", "StatefulSet", "web", "u-set");
        let other = podutil::owner_ref("apps/v1", "StatefulSet", "db", "u-other");
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        };
        let mk = |name: &str, app: &str, owner: Option<&OwnerReference>, deleting: bool| {
            let mut p = pod(name, &format!("u-{name}"));
            p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
            p.metadata.owner_references = owner.map(|o| vec![o.clone()]);
            if deleting {
                p.metadata.deletion_timestamp = Some(podutil::chrono_to_time(Utc::now()));
            }
            std::sync::Arc::new(p)
        };
        let objs = vec![
            mk("mine", "web", Some(&me), false),
            mk("stray", "db", Some(&me), false),
            mk("orphan", "web", None, false),
            mk("gone-orphan", "web", None, true),
            mk("theirs", "web", Some(&other), false),
            mk("not-member", "web", None, false),
        ];
        let member = |p: &Pod| p.metadata.name.as_deref() != Some("not-member");
        let (owned, patches) = claim(&objs, &me, &sel, false, member);
        let names: Vec<_> = owned
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["mine"]);
        let kinds: Vec<_> = patches
            .iter()
            .map(|c| match c {
                Claim::Adopt(p) => format!("adopt {}", p.name),
                Claim::Release(p) => format!("release {}", p.name),
            })
            .collect();
        assert_eq!(kinds, ["release stray", "adopt orphan"]);
        // an owner being deleted neither adopts nor releases
        let (owned, patches) = claim(&objs, &me, &sel, true, member);
        assert_eq!(owned.len(), 1);
        assert!(patches.is_empty());
    }
}
