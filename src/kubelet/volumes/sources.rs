//! API reads behind volumes: configMaps, secrets, the node's allocatable,
//! claims and their volumes, and service-account tokens (TokenRequest).
//!
//! Invariants: errors are returned as the text of a `FailedMount` event
//! (upstream wording); tokens are never logged. [`ReadCache`] only ever
//! serves an object that existed when read, never older than its TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
    ServiceAccountTokenProjection,
};
use kube::Api;
use kube::api::PostParams;

use super::plan::KeySource;
use crate::api::quantity::{Quantity, parse_quantity};

fn api_error(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    }
}

type Data = BTreeMap<String, Vec<u8>>;
/// (kind, namespace, name).
type Key = (KeySource, String, String);
type Entries = HashMap<Key, (Instant, Data)>;

/// Recent configMap and secret reads, shared by the periodic refreshes of
/// running pods' volumes: a hundred pods mounting `kube-root-ca.crt` read
/// it once per TTL, not once each per resync. A pod's first preparation
/// never uses it.
pub struct ReadCache {
    ttl: Duration,
    map: Mutex<Entries>,
}

impl ReadCache {
    pub fn new(ttl: Duration) -> ReadCache {
        ReadCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &Key, now: Instant) -> Option<Data> {
        self.lock()
            .get(key)
            .filter(|(at, _)| now.duration_since(*at) < self.ttl)
            .map(|(_, d)| d.clone())
    }

    fn put(&self, key: Key, data: Option<&Data>, now: Instant) {
        let mut map = self.lock();
        map.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        match data {
            Some(d) => {
                map.insert(key, (now, d.clone()));
            }
            None => {
                map.remove(&key);
            }
        }
    }
}

/// [`config_map`] or [`secret`] as `kind` says, through `cache` when one
/// is given.
pub async fn read_cached(
    client: &kube::Client,
    cache: Option<&ReadCache>,
    kind: KeySource,
    ns: &str,
    name: &str,
) -> Result<Option<Data>, String> {
    let key = (kind, ns.to_string(), name.to_string());
    if let Some(d) = cache.and_then(|c| c.get(&key, Instant::now())) {
        return Ok(Some(d));
    }
    let data = match kind {
        KeySource::Secret => secret(client, ns, name).await?,
        KeySource::ConfigMap => config_map(client, ns, name).await?,
    };
    if let Some(c) = cache {
        c.put(key, data.as_ref(), Instant::now());
    }
    Ok(data)
}

/// A configMap's `data` and `binaryData` as bytes; `None` if it does not exist.
pub async fn config_map(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(cm) = api.get_opt(name).await.map_err(api_error)? else {
        return Ok(None);
    };
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        out.insert(k, v.0);
    }
    Ok(Some(out))
}

/// A secret's `data` (and `stringData`, should a stored object carry it).
pub async fn secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(s) = api.get_opt(name).await.map_err(api_error)? else {
        return Ok(None);
    };
    let mut out: BTreeMap<String, Vec<u8>> = s
        .string_data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in s.data.unwrap_or_default() {
        out.insert(k, v.0);
    }
    Ok(Some(out))
}

/// The node's allocatable resources (limits fall back to these).
pub async fn node_allocatable(
    client: &kube::Client,
    node: &str,
) -> Result<BTreeMap<String, Quantity>, String> {
    let api: Api<Node> = Api::all(client.clone());
    let n = api.get(node).await.map_err(api_error)?;
    Ok(n.status
        .and_then(|s| s.allocatable.or(s.capacity))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, q)| parse_quantity(&q.0).map(|q| (k, q)))
        .collect())
}

/// A claim's bound volume: (claim, volume).
pub async fn bound_volume(
    client: &kube::Client,
    ns: &str,
    claim: &str,
) -> Result<(PersistentVolumeClaim, PersistentVolume), String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(api_error)?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    let (true, Some(pv_name)) = (bound, pv_name) else {
        return Err(format!("persistentvolumeclaim \"{claim}\" is not bound"));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get_opt(&pv_name)
        .await
        .map_err(api_error)?
        .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
    Ok((pvc, pv))
}

/// A fresh token for the pod's service account, bound to the pod.
pub async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    src: &ServiceAccountTokenProjection,
) -> Result<Vec<u8>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref();
    let sa = spec
        .and_then(|s| s.service_account_name.clone())
        .or_else(|| spec.and_then(|s| s.service_account.clone()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: src
                .audience
                .clone()
                .filter(|a| !a.is_empty())
                .into_iter()
                .collect(),
            expiration_seconds: Some(src.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let out: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await
        .map_err(|e| format!("failed to fetch token: {}", api_error(e)))?;
    let token = out
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "failed to fetch token: empty TokenRequest status".to_string())?;
    Ok(token.into_bytes())
}

#[cfg(test)]
mod read_cache_tests {
    use super::*;

    #[test]
    fn serves_only_fresh_existing_objects() {
        let c = ReadCache::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let key = (KeySource::ConfigMap, "ns".to_string(), "cm".to_string());
        let data = BTreeMap::from([("k".to_string(), b"v".to_vec())]);
        assert_eq!(c.get(&key, t0), None);
        c.put(key.clone(), Some(&data), t0);
        assert_eq!(c.get(&key, t0 + Duration::from_secs(9)), Some(data.clone()));
        assert_eq!(c.get(&key, t0 + Duration::from_secs(10)), None, "expired");
        // a secret of the same name is another entry
        assert_eq!(
            c.get(&(KeySource::Secret, "ns".into(), "cm".into()), t0),
            None
        );
        // gone from the API: forgotten
        c.put(key.clone(), None, t0);
        assert_eq!(c.get(&key, t0), None);
    }
}
