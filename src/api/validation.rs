//! stub
pub struct Cause { pub reason: &'static str, pub message: String, pub field: String }
pub fn validate_create(_g: &str, _k: &str, _o: &serde_json::Value) -> Vec<Cause> { vec![] }
pub fn validate_update(_g: &str, _k: &str, _o: &serde_json::Value, _n: &serde_json::Value) -> Vec<Cause> { vec![] }
pub fn is_dns1123_subdomain(_s: &str) -> bool { true }
