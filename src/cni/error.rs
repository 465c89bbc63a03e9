//! The one error type of the CNI plugin layer and its wire form.
//!
//! Every failure the plugin can report maps to a CNI error code (spec 1.0.0,
//! "Error" section): 1–11 are the well-known codes, 100+ are ours. The JSON
//! form is what the runtime reads from stdout when the plugin exits non-zero.

use serde_json::json;

/// Plugin-specific codes start at 100 (the spec reserves 0–99).
pub const CODE_NETLINK: u32 = 100;
pub const CODE_NFT: u32 = 101;
pub const CODE_IPAM_EXHAUSTED: u32 = 102;
pub const CODE_CHECK_FAILED: u32 = 103;
pub const CODE_NETNS: u32 = 104;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("incompatible CNI version {0:?} (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0)")]
    IncompatibleVersion(String),
    #[error("{0}")]
    UnsupportedField(String),
    #[error("{0}")]
    UnknownContainer(String),
    #[error("{0}")]
    InvalidEnv(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Decode(String),
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    TryAgainLater(String),
    #[error("{context}: {detail}")]
    Netlink { context: String, detail: String },
    #[error("{context}: {detail}")]
    Netns { context: String, detail: String },
    #[error("nftables: {0}")]
    Nft(String),
    #[error("no IP addresses available in subnet {0}")]
    IpamExhausted(String),
    #[error("check failed: {0}")]
    CheckFailed(String),
}

impl CniError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CniError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn netlink(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        CniError::Netlink {
            context: context.into(),
            detail: err.to_string(),
        }
    }

    pub fn netns(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        CniError::Netns {
            context: context.into(),
            detail: err.to_string(),
        }
    }

    /// The CNI error code for this error.
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion(_) => 1,
            CniError::UnsupportedField(_) => 2,
            CniError::UnknownContainer(_) => 3,
            CniError::InvalidEnv(_) => 4,
            CniError::Io { .. } => 5,
            CniError::Decode(_) => 6,
            CniError::InvalidConfig(_) => 7,
            CniError::TryAgainLater(_) => 11,
            CniError::Netlink { .. } => CODE_NETLINK,
            CniError::Nft(_) => CODE_NFT,
            CniError::IpamExhausted(_) => CODE_IPAM_EXHAUSTED,
            CniError::CheckFailed(_) => CODE_CHECK_FAILED,
            CniError::Netns { .. } => CODE_NETNS,
        }
    }

    /// Short message for `msg`; the cause chain goes to `details`.
    fn short_msg(&self) -> String {
        match self {
            CniError::Io { context, .. }
            | CniError::Netlink { context, .. }
            | CniError::Netns { context, .. } => context.clone(),
            other => other.to_string(),
        }
    }

    fn details(&self) -> String {
        match self {
            CniError::Io { source, .. } => source.to_string(),
            CniError::Netlink { detail, .. } | CniError::Netns { detail, .. } => detail.clone(),
            _ => String::new(),
        }
    }

    /// The error object the runtime expects on stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        json!({
            "cniVersion": cni_version,
            "code": self.code(),
            "msg": self.short_msg(),
            "details": self.details(),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_json() {
        let cases: Vec<(CniError, u32, &str, &str)> = vec![
            (
                CniError::IncompatibleVersion("9.9.9".into()),
                1,
                "incompatible CNI version \"9.9.9\" (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0)",
                "",
            ),
            (
                CniError::InvalidEnv("CNI_COMMAND is not set".into()),
                4,
                "CNI_COMMAND is not set",
                "",
            ),
            (
                CniError::io("cannot read /x", std::io::Error::other("boom")),
                5,
                "cannot read /x",
                "boom",
            ),
            (CniError::Decode("bad json".into()), 6, "bad json", ""),
            (
                CniError::InvalidConfig("subnet is required".into()),
                7,
                "invalid network config: subnet is required",
                "",
            ),
            (
                CniError::netlink("create veth", "File exists"),
                100,
                "create veth",
                "File exists",
            ),
            (
                CniError::IpamExhausted("10.0.0.0/30".into()),
                102,
                "no IP addresses available in subnet 10.0.0.0/30",
                "",
            ),
        ];
        for (err, code, msg, details) in cases {
            let v: serde_json::Value = serde_json::from_str(&err.to_json("1.0.0")).unwrap();
            assert_eq!(v["cniVersion"], "1.0.0");
            assert_eq!(v["code"], code, "{err:?}");
            assert_eq!(v["msg"], msg);
            assert_eq!(v["details"], details);
        }
    }
}
