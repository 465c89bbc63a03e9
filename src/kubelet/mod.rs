//! The kubelet: makes the pods bound to this node run on containerd through
//! CRI, and reports their status and the node's to the API server.
//!
//! Shells (`node`, `pods`, `server`) do I/O; `status`, `env` and the planning
//! parts of `volumes` and `probes` are pure and unit-tested.
//!
//! Contract between modules (CRI metadata the kubelet sets, as upstream):
//! - sandbox and container labels `io.kubernetes.pod.name`,
//!   `io.kubernetes.pod.namespace`, `io.kubernetes.pod.uid`, and on
//!   containers `io.kubernetes.container.name`;
//! - container annotations `io.kubernetes.container.restartCount` and
//!   `io.kubernetes.container.hash` (`plan::container_hash` of the spec the
//!   instance was created from; a running instance whose hash differs from
//!   the pod's current spec is killed and recreated);
//! - the sandbox `log_directory` is `<pod-logs>/<ns>_<name>_<uid>` and a
//!   container's `log_path` is `<container>/<restartCount>.log`;
//! - the most recent exited instance of a container is kept until its
//!   successor runs, so `kubectl logs --previous` can read it.

pub mod admission;
pub mod cri;
pub mod env;
pub mod eviction;
pub mod fsinfo;
pub mod imagegc;
pub mod logs;
pub mod node;
pub mod plan;
pub mod pods;
pub mod probes;
pub mod running;
pub mod server;
pub mod settings;
pub mod static_pods;
pub mod stats;
pub mod status;
pub mod volumes;

/// CRI label keys the kubelet puts on sandboxes and containers.
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
}
