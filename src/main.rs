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
        Command::Agent(_) => {
            eprintln!(
                "skiff agent: not available yet in this build (the node agent is a later milestone)"
            );
            ExitCode::from(2)
        }
        Command::KubeletDev(cmd) => {
            init_logging(false, false);
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(skiff::kubelet::server::dev::run(cmd)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("skiff kubelet-dev: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Kubectl { args } => {
            let kubeconfig =
                std::env::var_os("KUBECONFIG").unwrap_or_else(|| "/etc/skiff/skiff.yaml".into());
            let err = exec_kubectl(&args, &kubeconfig);
            eprintln!("skiff kubectl: cannot run kubectl from PATH: {err}");
            ExitCode::FAILURE
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
