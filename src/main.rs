//! `skiff` entry point: parse the command line and hand over to the library.

use std::process::ExitCode;

use skiff::cli::{self, Command};

// the API server allocates many short-lived JSON trees; mimalloc handles that
// pattern markedly better than glibc malloc
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(json: bool, debug: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if debug { "debug" } else { "info" })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    if let Some(code) = skiff::cni::dispatch_argv0() {
        return code;
    }
    let cli = match cli::parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Server(args) => {
            let cfg = match skiff::config::ServerConfig::from_args(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("skiff server: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(cfg.log_json, cfg.debug);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("skiff server: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(skiff::server::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("skiff server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Agent(args) => {
            let setup = match skiff::agent::setup::AgentSetup::from_args(&args) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("skiff agent: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(setup.log_json, setup.debug);
            let rt = match skiff::agent::memory::runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("skiff agent: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async {
                let joined = skiff::agent::join::join(
                    &setup.server_url,
                    &setup.token,
                    &setup.node_name,
                    &setup.node_ips,
                    &setup.agent_dir,
                )
                .await?;
                let cfg = setup.agent_config(&joined.cluster);
                skiff::agent::run_joined(cfg, joined).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("skiff agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token(cmd) => {
            let Some(rt) = runtime("token") else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(skiff::tokens::cmd::run(&cmd)) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e @ skiff::tokens::cmd::TokenCmdError::Usage(_)) => {
                    eprintln!("skiff token: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("skiff token: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::StreamingDev(cmd) => {
            init_logging(false, false);
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(skiff::kubelet::server::dev::run(cmd)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("skiff streaming-dev: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::KubeletDev(a) => kubelet_dev(a),
        Command::Kubectl { args } => {
            let kubeconfig =
                std::env::var_os("KUBECONFIG").unwrap_or_else(|| "/etc/skiff/skiff.yaml".into());
            let err = exec_kubectl(&args, &kubeconfig);
            eprintln!("skiff kubectl: cannot run kubectl from PATH: {err}");
            ExitCode::FAILURE
        }
    }
}

fn kubelet_dev(a: cli::KubeletDevArgs) -> ExitCode {
    init_logging(false, a.debug);
    let (Ok(node_ip), Ok(cluster_dns)) = (a.node_ip.parse(), a.cluster_dns.parse()) else {
        eprintln!("skiff kubelet-dev: --node-ip and --cluster-dns must be IP addresses");
        return ExitCode::from(2);
    };
    let args = skiff::kubelet::pods::dev::DevArgs {
        kubeconfig: a.kubeconfig,
        node_name: a.node_name,
        node_ip,
        cri_socket: a.cri_socket,
        agent_dir: a.agent_dir,
        cluster_dns,
        cluster_domain: a.cluster_domain,
    };
    let Some(rt) = runtime("kubelet-dev") else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(skiff::kubelet::pods::dev::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff kubelet-dev: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(what: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("skiff {what}: cannot start the async runtime: {e}");
            None
        }
    }
}

fn exec_kubectl(args: &[std::ffi::OsString], kubeconfig: &std::ffi::OsStr) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .exec()
}
