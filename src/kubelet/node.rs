//! (placeholder: node)
