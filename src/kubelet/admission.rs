//! Kubelet pod admission (upstream's `canAdmitPod` resource check): a pod
//! bound to this node is admitted only if its effective requests fit in the
//! node's allocatable next to the pods already admitted; otherwise it is
//! rejected — phase `Failed`, reason `OutOfcpu` / `OutOfmemory` /
//! `OutOfephemeral-storage` / `OutOfpods` — and never started. The
//! scheduler already keeps scheduled pods within allocatable; this catches
//! pods bound with `spec.nodeName` directly.
//!
//! Pure: the caller gives the pods already admitted and the allocatable.

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::predicates::{Resources, pod_requests};

/// What the node can give pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocatable {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
}

/// Why a pod is rejected: the status reason and message (and event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

/// Whether a pod still holds node resources (not Succeeded/Failed).
pub fn is_active(p: &Pod) -> bool {
    !matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Admits `pod` next to `admitted` (only active pods count) on a node with
/// `alloc`, checking pods, cpu, memory and ephemeral storage in upstream's
/// order.
pub fn admit<'a>(
    pod: &Pod,
    admitted: impl IntoIterator<Item = &'a Pod>,
    alloc: &Allocatable,
) -> Result<(), Rejection> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let want = pod_requests(spec);
    let mut used = Resources::default();
    let mut count = 0i64;
    for p in admitted.into_iter().filter(|p| is_active(p)) {
        count += 1;
        if let Some(s) = p.spec.as_ref() {
            used.add(&pod_requests(s));
        }
    }
    let checks = [
        ("pods", 1, count, alloc.pods),
        ("cpu", want.milli_cpu, used.milli_cpu, alloc.milli_cpu),
        ("memory", want.memory, used.memory, alloc.memory),
        (
            "ephemeral-storage",
            want.ephemeral_storage,
            used.ephemeral_storage,
            alloc.ephemeral_storage,
        ),
    ];
    for (name, requested, used, capacity) in checks {
        if requested > 0 && requested.saturating_add(used) > capacity {
            return Err(Rejection {
                reason: format!("OutOf{name}"),
                message: format!(
                    "Pod was rejected: Node didn't have enough resource: {name}, requested: {requested}, used: {used}, capacity: {capacity}"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(cpu: &str, mem: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": cpu, "memory": mem}}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    const NODE: Allocatable = Allocatable {
        milli_cpu: 2000,
        memory: 1 << 30,
        ephemeral_storage: 10 << 30,
        pods: 3,
    };

    #[test]
    fn fits_rejects_and_ignores_finished_pods() {
        let running = [pod("1500m", "100Mi", "Running")];
        assert_eq!(
            admit(&pod("500m", "1Mi", "Pending"), &running, &NODE),
            Ok(())
        );
        let e = admit(&pod("600m", "1Mi", "Pending"), &running, &NODE).unwrap_err();
        assert_eq!(e.reason, "OutOfcpu");
        assert_eq!(
            e.message,
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000"
        );
        let e = admit(&pod("1m", "1Gi", "Pending"), &running, &NODE).unwrap_err();
        assert_eq!(e.reason, "OutOfmemory");
        // a finished pod holds nothing
        let done = [pod("2", "1Gi", "Succeeded")];
        assert_eq!(admit(&pod("2", "1Gi", "Pending"), &done, &NODE), Ok(()));
        // the pod count
        let three = [
            pod("0", "0", "Running"),
            pod("0", "0", "Running"),
            pod("0", "0", "Pending"),
        ];
        assert_eq!(
            admit(&pod("0", "0", "Pending"), &three, &NODE)
                .unwrap_err()
                .reason,
            "OutOfpods"
        );
    }
}
