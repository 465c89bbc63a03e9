//! (placeholder: join)
