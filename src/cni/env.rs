//! The `CNI_*` environment of one plugin invocation, parsed from a lookup
//! function so it can be tested without touching the process environment.
//!
//! Invariant: for ADD/DEL/CHECK the container id and interface name are
//! present and valid; ADD and CHECK also have a netns path.

use super::config::validate_ifname;
use super::error::CniError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// Empty for DEL when the runtime no longer has a namespace.
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl CniEnv {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("GC") => Command::Gc,
            Some("STATUS") => Command::Status,
            Some(other) => {
                return Err(CniError::InvalidEnv(format!(
                    "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION"
                )));
            }
            None => return Err(CniError::InvalidEnv("CNI_COMMAND is not set".into())),
        };
        let mut env = CniEnv {
            command,
            container_id: get("CNI_CONTAINERID").unwrap_or_default(),
            netns: get("CNI_NETNS").unwrap_or_default(),
            ifname: get("CNI_IFNAME").unwrap_or_default(),
            args: get("CNI_ARGS").unwrap_or_default(),
        };
        if matches!(command, Command::Add | Command::Del | Command::Check) {
            if env.container_id.is_empty() {
                return Err(CniError::InvalidEnv("CNI_CONTAINERID is not set".into()));
            }
            if !valid_container_id(&env.container_id) {
                return Err(CniError::InvalidEnv(format!(
                    "CNI_CONTAINERID {:?} must start with a letter or digit and use only letters, digits, '_', '.', '-'",
                    env.container_id
                )));
            }
            if env.ifname.is_empty() {
                return Err(CniError::InvalidEnv("CNI_IFNAME is not set".into()));
            }
            validate_ifname("CNI_IFNAME", &env.ifname).map_err(CniError::InvalidEnv)?;
            if command != Command::Del && env.netns.is_empty() {
                return Err(CniError::InvalidEnv("CNI_NETNS is not set".into()));
            }
            env.netns = env.netns.trim().to_string();
        }
        Ok(env)
    }

    pub fn from_process() -> Result<CniEnv, CniError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn table() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        let e = env(&full).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.ifname, "eth0");

        let v = env(&[("CNI_COMMAND", "VERSION")]).unwrap();
        assert_eq!(v.command, Command::Version);

        // DEL tolerates a missing netns
        let d = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(d.netns, "");

        let bad: &[(&[(&str, &str)], &str)] = &[
            (&[], "CNI_COMMAND is not set"),
            (&[("CNI_COMMAND", "FROB")], "\"FROB\""),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "/x"),
                ],
                "CNI_CONTAINERID is not set",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "../etc"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "/x"),
                ],
                "must start with",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "c"),
                    ("CNI_NETNS", "/x"),
                ],
                "CNI_IFNAME is not set",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "c"),
                    ("CNI_IFNAME", "e/0"),
                    ("CNI_NETNS", "/x"),
                ],
                "must not contain",
            ),
            (
                &[
                    ("CNI_COMMAND", "CHECK"),
                    ("CNI_CONTAINERID", "c"),
                    ("CNI_IFNAME", "eth0"),
                ],
                "CNI_NETNS is not set",
            ),
        ];
        for (pairs, needle) in bad {
            let err = env(pairs).unwrap_err();
            assert_eq!(err.code(), 4);
            assert!(err.to_string().contains(needle), "{pairs:?}: {err}");
        }
    }
}
