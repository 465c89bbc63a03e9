//! (placeholder: env)
