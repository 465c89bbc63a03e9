//! (placeholder: server)
