//! The built-in CNI plugin (spec 1.0.0). containerd runs this executable
//! through symlinks named `skiff-cni` (pod networking on the node bridge,
//! IPAM, hostPorts, masquerade) and `loopback` (`lo` up in every pod).
//!
//! Entry: [`dispatch_argv0`] from `main` before anything else. The agent
//! uses [`conflist`] and [`install_binaries`] to set containerd up.
//! Layout: `config`/`env` parse input, `ipam` + `nft` + `result` are pure,
//! `ipam_store`, `nft_apply`, `nftgen`, `link`, `netns` do the I/O, `plugin` and
//! `loopback` orchestrate. Invariant: a plugin run writes exactly one JSON
//! document (or nothing, for DEL/CHECK) to stdout; errors are CNI error
//! objects with exit code 1; nothing panics on bad input.

pub mod config;
pub mod env;
pub mod error;
pub mod install;
pub mod ipam;
pub mod ipam_store;
pub mod ipnet;
pub mod link;
pub mod loopback;
pub mod netns;
pub mod nft;
pub mod nft_apply;
pub mod nftgen;
pub mod plugin;
pub mod result;

use std::io::{Read, Write};
use std::process::ExitCode;

pub use install::{conflist, install_binaries};

use config::NetConf;
use env::{CniEnv, Command};
use error::CniError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plugin {
    Bridge,
    Loopback,
}

/// Runs the plugin when invoked as `skiff-cni` or `loopback`; `None` otherwise.
pub fn dispatch_argv0() -> Option<ExitCode> {
    let argv0 = std::env::args_os().next()?;
    let base = std::path::Path::new(&argv0)
        .file_name()?
        .to_str()?
        .to_string();
    let plugin = match base.as_str() {
        "skiff-cni" => Plugin::Bridge,
        "loopback" => Plugin::Loopback,
        _ => return None,
    };
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let outcome = match read {
        Ok(_) => run(plugin, &stdin),
        Err(e) => Err(CniError::io("cannot read the network config from stdin", e)),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(doc) => {
            if let Some(doc) = doc {
                let _ = writeln!(out, "{doc}");
            }
            let _ = out.flush();
            Some(ExitCode::SUCCESS)
        }
        Err(e) => {
            let version = config::sniff_version(&stdin)
                .filter(|v| config::SUPPORTED_VERSIONS.contains(&v.as_str()))
                .unwrap_or_else(|| "1.0.0".to_string());
            let _ = writeln!(out, "{}", e.to_json(&version));
            let _ = out.flush();
            Some(ExitCode::FAILURE)
        }
    }
}

/// One invocation: environment from the process, config from `stdin`.
fn run(plugin: Plugin, stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    let env = CniEnv::from_process()?;
    match env.command {
        Command::Version => {
            let v = config::sniff_version(stdin)
                .filter(|v| config::SUPPORTED_VERSIONS.contains(&v.as_str()))
                .unwrap_or_else(|| "1.0.0".to_string());
            Ok(Some(result::version_result(&v)))
        }
        // spec 1.1.0 commands: we advertise only up to 1.0.0, answer politely
        Command::Gc | Command::Status => Ok(None),
        _ => match plugin {
            Plugin::Loopback => {
                let v = config::parse_minimal(stdin)?;
                loopback::run(&env, &v)
            }
            Plugin::Bridge => {
                let conf = NetConf::parse(stdin)?;
                match env.command {
                    Command::Add => {
                        plugin::add(&conf, &env).map(|r| Some(r.to_json(&conf.cni_version)))
                    }
                    Command::Del => plugin::del(&conf, &env).map(|_| None),
                    Command::Check => plugin::check(&conf, &env).map(|_| None),
                    Command::Version | Command::Gc | Command::Status => Ok(None),
                }
            }
        },
    }
}
