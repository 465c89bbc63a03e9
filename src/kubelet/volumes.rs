//! (placeholder: volumes)
