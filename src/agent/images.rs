//! (placeholder: images)
