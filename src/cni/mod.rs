//! The built-in CNI plugin. containerd runs this executable through
//! symlinks named `skiff-cni` (pod networking) and `loopback`.
