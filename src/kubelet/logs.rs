//! (placeholder: logs)
