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
//! - container annotation `io.kubernetes.container.restartCount`;
//! - the sandbox `log_directory` is `<pod-logs>/<ns>_<name>_<uid>` and a
//!   container's `log_path` is `<container>/<restartCount>.log`;
//! - the most recent exited instance of a container is kept until its
//!   successor runs, so `kubectl logs --previous` can read it.

pub mod cri;
pub mod env;
pub mod logs;
pub mod node;
pub mod plan;
pub mod pods;
pub mod probes;
pub mod server;
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
}
