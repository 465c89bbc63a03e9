//! skiff: a Kubernetes distribution in one executable.
//!
//! The library holds every component; `main.rs` only parses the command line
//! and calls into it. Dependencies point downward: `pki`, `store` and `api`
//! know nothing of HTTP; `apiserver` builds on them; `server` wires it all.

pub mod agent;
pub mod api;
pub mod apiserver;
pub mod cli;
pub mod cni;
pub mod config;
pub mod controllers;
pub mod inproc;
pub mod kubelet;
pub mod pki;
pub mod scheduler;
pub mod server;
pub mod store;
