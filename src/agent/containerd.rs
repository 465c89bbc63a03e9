//! (placeholder: containerd)
