//! Placeholder until the scheduler lands: only the predicates the
//! DaemonSet controller uses.

pub mod predicates;
