//! Scheduler (placeholder for the node lifecycle controller: only the
//! predicates it shares are declared here; the scheduler branch owns this file).

pub mod predicates;
