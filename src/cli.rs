//! Command-line definitions (clap). Every server and agent flag is also an env var
//! `SKIFF_<FLAG>` and a key in `/etc/skiff/config.yaml` (+ `config.yaml.d/*.yaml`);
//! precedence is flag > env > file > default, merged once in `parse`.
//!
//! Invariant: the merge happens here and nowhere else; the rest of the
//! program receives a typed `config::ServerConfig`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "skiff",
    version,
    about = "A Kubernetes distribution in one executable"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane (API server, store, controllers).
    Server(Box<ServerArgs>),
    /// Run a worker node that joins a server.
    Agent(Box<AgentArgs>),
    /// Manage bootstrap tokens for joining agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Test harness: run the kubelet's pod workers against a CRI socket.
    #[command(hide = true)]
    KubeletDev(KubeletDevArgs),
    /// Run kubectl (found on PATH) with the admin kubeconfig.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Developer tools for the kubelet server (testing only).
    #[command(hide = true, subcommand)]
    StreamingDev(crate::kubelet::server::dev::DevCommand),
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Config file (YAML, keys are flag names)
    #[arg(
        long,
        short = 'c',
        env = "SKIFF_CONFIG_FILE",
        default_value = "/etc/skiff/config.yaml"
    )]
    pub config: PathBuf,
    /// Folder to hold state
    #[arg(
        long,
        short = 'd',
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    pub data_dir: PathBuf,
    /// HTTPS listen port of the API server
    #[arg(long, env = "SKIFF_HTTPS_LISTEN_PORT", default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address the API server binds to
    #[arg(long, env = "SKIFF_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: String,
    /// IP address that clients and nodes use to reach the API server (default: node IP)
    #[arg(long, env = "SKIFF_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
    /// Extra hostnames or IPs as Subject Alternative Names in the serving certificate
    #[arg(long, env = "SKIFF_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Write the admin kubeconfig to this path
    #[arg(
        long,
        short = 'o',
        env = "SKIFF_WRITE_KUBECONFIG",
        default_value = "/etc/skiff/skiff.yaml"
    )]
    pub write_kubeconfig: PathBuf,
    /// File mode of the admin kubeconfig (octal)
    #[arg(long, env = "SKIFF_WRITE_KUBECONFIG_MODE", default_value = "0600")]
    pub write_kubeconfig_mode: String,
    /// Shared secret used to join agents (default: generated, stored in <data-dir>/server/token)
    #[arg(long, short = 't', env = "SKIFF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Do not run the embedded agent
    #[arg(long, env = "SKIFF_DISABLE_AGENT")]
    pub disable_agent: bool,
    /// Do not run the scheduler (benchmarks bring their own)
    #[arg(long, env = "SKIFF_DISABLE_SCHEDULER", hide = true)]
    pub disable_scheduler: bool,
    /// Pod network CIDR
    #[arg(long, env = "SKIFF_CLUSTER_CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Service network CIDR
    #[arg(long, env = "SKIFF_SERVICE_CIDR", default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Cluster DNS service IP
    #[arg(long, env = "SKIFF_CLUSTER_DNS", default_value = "10.43.0.10")]
    pub cluster_dns: String,
    /// How pods reach pods on other nodes: vxlan, host-gw or none
    #[arg(long, env = "SKIFF_FLANNEL_BACKEND", default_value = "vxlan")]
    pub flannel_backend: String,
    /// Node name (default: hostname)
    #[arg(long, env = "SKIFF_NODE_NAME")]
    pub node_name: Option<String>,
    /// Node IP to advertise
    #[arg(long, env = "SKIFF_NODE_IP")]
    pub node_ip: Option<String>,
    /// Label to register the embedded agent's node with (key=value; repeatable)
    #[arg(long, env = "SKIFF_NODE_LABEL", value_delimiter = ',')]
    pub node_label: Vec<String>,
    /// Taint to register the embedded agent's node with (key[=value]:Effect; repeatable)
    #[arg(long, env = "SKIFF_NODE_TAINT", value_delimiter = ',')]
    pub node_taint: Vec<String>,
    /// Use an existing CRI socket instead of running containerd
    #[arg(long, env = "SKIFF_CONTAINER_RUNTIME_ENDPOINT")]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Port of the embedded agent's kubelet HTTPS server
    #[arg(long, env = "SKIFF_KUBELET_PORT", default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Kubelet setting for the embedded agent (key=value, e.g. eviction-hard=memory.available<100Mi; repeatable)
    #[arg(long = "kubelet-arg")]
    pub kubelet_arg: Vec<String>,
    /// Cluster domain
    #[arg(long, env = "SKIFF_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// How long a node may go without a heartbeat before it is marked unhealthy (e.g. 40s, 1m)
    #[arg(long, env = "SKIFF_NODE_MONITOR_GRACE_PERIOD", default_value = "40s")]
    pub node_monitor_grace_period: String,
    /// How often the store compacts old revisions (seconds)
    #[arg(long, env = "SKIFF_STORE_COMPACT_INTERVAL", default_value_t = 300)]
    pub store_compact_interval: u64,
    /// Revisions of history the store keeps when compacting
    #[arg(long, env = "SKIFF_STORE_COMPACT_KEEP", default_value_t = 10000)]
    pub store_compact_keep: i64,
    /// Log format: text or json
    #[arg(long, env = "SKIFF_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Debug logging
    #[arg(long, env = "SKIFF_DEBUG")]
    pub debug: bool,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Config file (YAML, keys are flag names)
    #[arg(
        long,
        short = 'c',
        env = "SKIFF_CONFIG_FILE",
        default_value = "/etc/skiff/config.yaml"
    )]
    pub config: PathBuf,
    /// Server to connect to (https://<server>:6443)
    #[arg(long, short = 's', env = "SKIFF_URL")]
    pub server: Option<String>,
    /// Join token (K10<ca-hash>::<credentials>)
    #[arg(long, short = 't', env = "SKIFF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the join token
    #[arg(long, env = "SKIFF_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Folder to hold state
    #[arg(
        long,
        short = 'd',
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    pub data_dir: PathBuf,
    /// Node name (default: hostname)
    #[arg(long, env = "SKIFF_NODE_NAME")]
    pub node_name: Option<String>,
    /// IP address(es) to advertise for the node (default: the outgoing interface's address)
    #[arg(long, env = "SKIFF_NODE_IP", value_delimiter = ',')]
    pub node_ip: Vec<String>,
    /// Label to register the node with (key=value; repeatable)
    #[arg(long, env = "SKIFF_NODE_LABEL", value_delimiter = ',')]
    pub node_label: Vec<String>,
    /// Taint to register the node with (key[=value]:Effect; repeatable)
    #[arg(long, env = "SKIFF_NODE_TAINT", value_delimiter = ',')]
    pub node_taint: Vec<String>,
    /// Use an existing CRI socket instead of running containerd
    #[arg(long, env = "SKIFF_CONTAINER_RUNTIME_ENDPOINT")]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Port of the kubelet HTTPS server
    #[arg(long, env = "SKIFF_KUBELET_PORT", default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Kubelet setting (key=value, e.g. eviction-hard=memory.available<100Mi; repeatable)
    #[arg(long = "kubelet-arg")]
    pub kubelet_arg: Vec<String>,
    /// How pods reach pods on other nodes: vxlan, host-gw or none (same on every node)
    #[arg(long, env = "SKIFF_FLANNEL_BACKEND", default_value = "vxlan")]
    pub flannel_backend: String,
    /// Log format: text or json
    #[arg(long, env = "SKIFF_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Debug logging
    #[arg(long, env = "SKIFF_DEBUG")]
    pub debug: bool,
}

/// `skiff token …`: bootstrap tokens for joining agents.
#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Create a bootstrap token and print the full join token
    Create(TokenCreateArgs),
    /// List bootstrap tokens
    List(TokenApiArgs),
    /// Delete bootstrap tokens
    Delete(TokenDeleteArgs),
}

/// How `skiff token` reaches the API.
#[derive(Args, Debug, Clone)]
pub struct TokenApiArgs {
    /// Admin kubeconfig (default: /etc/skiff/skiff.yaml, else the admin certificate under --data-dir)
    #[arg(long, env = "SKIFF_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Server data folder (used when no kubeconfig is found)
    #[arg(
        long,
        short = 'd',
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    pub data_dir: PathBuf,
    /// API server URL used with the --data-dir credentials
    #[arg(
        long,
        short = 's',
        env = "SKIFF_URL",
        default_value = "https://127.0.0.1:6443"
    )]
    pub server: String,
}

#[derive(Args, Debug, Clone)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub api: TokenApiArgs,
    /// Time until the token expires (e.g. 24h, 30m; 0 = never)
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    /// Human-readable description
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Args, Debug, Clone)]
pub struct TokenDeleteArgs {
    #[command(flatten)]
    pub api: TokenApiArgs,
    /// Token IDs (or whole tokens) to delete
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct KubeletDevArgs {
    #[arg(long)]
    pub kubeconfig: PathBuf,
    #[arg(long)]
    pub node_name: String,
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: String,
    #[arg(long)]
    pub cri_socket: PathBuf,
    #[arg(long)]
    pub agent_dir: PathBuf,
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: String,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    #[arg(long)]
    pub debug: bool,
}

/// Read the config file and its drop-in directory into flag-style arguments.
fn config_file_args(path: &Path, explicit: bool) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut files = Vec::new();
    if path.exists() {
        files.push(path.to_path_buf());
    } else if explicit {
        return Err(format!(
            "config file {} does not exist (flag --config)",
            path.display()
        ));
    }
    let dropins = PathBuf::from(format!("{}.d", path.display()));
    if let Ok(rd) = std::fs::read_dir(&dropins) {
        let mut extra: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).map_err(|e| format!("reading {}: {e}", f.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("parsing {}: {e}", f.display()))?;
        let Some(map) = v.as_mapping() else {
            return Err(format!(
                "{}: expected a mapping of flag names to values",
                f.display()
            ));
        };
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                return Err(format!("{}: keys must be flag names", f.display()));
            };
            let (key, append) = match key.strip_suffix('+') {
                Some(k) => (k, true),
                None => (key, false),
            };
            let vals: Vec<String> = match v {
                serde_yaml_ng::Value::Sequence(s) => {
                    s.iter().map(scalar).collect::<Result<_, _>>()?
                }
                other => vec![scalar(other)?],
            };
            match out.iter_mut().find(|(k, _)| k == key) {
                Some((_, existing)) if append => existing.extend(vals),
                Some((_, existing)) => *existing = vals,
                None => out.push((key.to_string(), vals)),
            }
        }
    }
    Ok(out)
}

fn scalar(v: &serde_yaml_ng::Value) -> Result<String, String> {
    match v {
        serde_yaml_ng::Value::String(s) => Ok(s.clone()),
        serde_yaml_ng::Value::Bool(b) => Ok(b.to_string()),
        serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("unsupported config value {other:?}")),
    }
}

/// Parse the command line, merging the config file for `server` and `agent`.
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os().collect())
}

pub fn parse_from(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
    let cmd = Cli::command();
    let matches = cmd.clone().try_get_matches_from(argv.clone())?;
    let Some((subcommand @ ("server" | "agent"), sub)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches);
    };
    let explicit = matches!(
        sub.value_source("config"),
        Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
    );
    let path: PathBuf = sub
        .get_one::<PathBuf>("config")
        .cloned()
        .unwrap_or_default();
    let file_args = config_file_args(&path, explicit)
        .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{e}\n")))?;
    if file_args.is_empty() {
        return Cli::from_arg_matches(&matches);
    }
    let server_cmd = cmd.find_subcommand(subcommand).cloned();
    let known: Vec<(String, String, bool)> = server_cmd
        .iter()
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            let is_flag = matches!(a.get_action(), clap::ArgAction::SetTrue);
            Some((a.get_id().to_string(), long, is_flag))
        })
        .collect();
    // Insert file values right after the subcommand, only for flags not set by CLI/env.
    let mut extra: Vec<OsString> = Vec::new();
    for (key, vals) in file_args {
        let Some((id, long, is_flag)) = known.iter().find(|(_, l, _)| *l == key) else {
            eprintln!(
                "skiff: warning: unknown key {key:?} in config file {}",
                path.display()
            );
            continue;
        };
        if matches!(
            sub.value_source(id),
            Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
        ) {
            continue;
        }
        if *is_flag {
            if vals.iter().any(|v| v == "true") {
                extra.push(format!("--{long}").into());
            }
        } else {
            for v in vals {
                extra.push(format!("--{long}={v}").into());
            }
        }
    }
    let pos = argv
        .iter()
        .position(|a| a == subcommand)
        .map(|p| p + 1)
        .unwrap_or(argv.len());
    let mut merged = argv[..pos].to_vec();
    merged.extend(extra);
    merged.extend_from_slice(&argv[pos..]);
    let matches = Cli::command().try_get_matches_from(merged)?;
    Cli::from_arg_matches(&matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(args: &[&str]) -> ServerArgs {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse_from(argv).unwrap().command {
            Command::Server(s) => *s,
            _ => panic!("not server"),
        }
    }

    #[test]
    fn config_file_merges_below_flags() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, "https-listen-port: 7443\ntls-san:\n  - a.example\n  - 10.0.0.9\ndisable-agent: true\nwrite-kubeconfig-mode: \"0644\"\n").unwrap();
        std::fs::create_dir(dir.path().join("config.yaml.d")).unwrap();
        std::fs::write(
            dir.path().join("config.yaml.d/10-x.yaml"),
            "bind-address: 127.0.0.1\n",
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        let s = server(&["skiff", "server", "--config", c]);
        assert_eq!(s.https_listen_port, 7443);
        assert_eq!(s.tls_san, vec!["a.example", "10.0.0.9"]);
        assert!(s.disable_agent);
        assert_eq!(s.bind_address, "127.0.0.1");
        assert_eq!(s.write_kubeconfig_mode, "0644");
        let s = server(&[
            "skiff",
            "server",
            "--config",
            c,
            "--https-listen-port",
            "9443",
        ]);
        assert_eq!(s.https_listen_port, 9443);
    }

    #[test]
    fn agent_flags_and_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(
            &cfg,
            "server: https://10.0.0.1:6443\nnode-label:\n  - a=b\n  - c=d\nkubelet-port: 11250\nnode-name: fromfile\n",
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        let argv: Vec<OsString> = [
            "skiff",
            "agent",
            "--config",
            c,
            "--node-name",
            "n1",
            "--node-taint",
            "k=v:NoSchedule",
            "--node-ip",
            "10.0.0.2,10.0.0.3",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let Command::Agent(a) = parse_from(argv).unwrap().command else {
            panic!("not agent")
        };
        assert_eq!(a.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(a.node_label, vec!["a=b", "c=d"]);
        assert_eq!(a.node_taint, vec!["k=v:NoSchedule"]);
        assert_eq!(a.node_ip, vec!["10.0.0.2", "10.0.0.3"]);
        assert_eq!(a.kubelet_port, 11250);
        assert_eq!(a.node_name.as_deref(), Some("n1"), "flag beats file");
    }

    #[test]
    fn token_subcommands() {
        let parse = |args: &[&str]| parse_from(args.iter().map(OsString::from).collect());
        let Command::Token(TokenCommand::Create(c)) = parse(&[
            "skiff",
            "token",
            "create",
            "--ttl",
            "1h",
            "--description",
            "x",
        ])
        .unwrap()
        .command
        else {
            panic!("not token create")
        };
        assert_eq!((c.ttl.as_str(), c.description.as_str()), ("1h", "x"));
        assert!(matches!(
            parse(&["skiff", "token", "list", "--kubeconfig", "/k"])
                .unwrap()
                .command,
            Command::Token(TokenCommand::List(_))
        ));
        assert!(parse(&["skiff", "token", "delete"]).is_err());
    }

    #[test]
    fn missing_explicit_config_is_an_error() {
        let argv: Vec<OsString> = ["skiff", "server", "--config", "/nonexistent/x.yaml"]
            .iter()
            .map(OsString::from)
            .collect();
        let e = parse_from(argv).unwrap_err().to_string();
        assert!(e.contains("--config"), "{e}");
    }
}
