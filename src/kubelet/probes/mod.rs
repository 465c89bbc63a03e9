//! (placeholder: probes)
