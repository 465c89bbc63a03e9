//! (placeholder: pods)
