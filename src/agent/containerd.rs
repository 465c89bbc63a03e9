//! containerd as a supervised child of the agent: its generated config
//! (pure, `render_config`), registry settings from `registries.yaml`, the
//! cgroup driver, and the process itself (`Containerd::start`/`supervise`).
//!
//! Invariants:
//! - everything containerd owns lives under `AgentConfig::containerd_dir()`
//!   (root, state, sockets, opt, runc state, log, pid file), so two agents
//!   on one host never share state; the config file is 0600 (registry
//!   passwords) and the directory 0700;
//! - the child gets PR_SET_PDEATHSIG(SIGTERM) from a thread that lives as
//!   long as the child, so containerd never outlives skiff, while shims and
//!   containers do (they are re-parented and adopted on the next start);
//! - a containerd left by a previous skiff (pid file, same config path) is
//!   stopped before a new one starts;
//! - with `--container-runtime-endpoint` nothing is spawned or written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{oneshot, watch};

use super::AgentConfig;
use super::images::PAUSE_IMAGE;
use crate::kubelet::cri::{Cri, CriError};

/// Default location of the registry configuration (k3s format).
pub const REGISTRIES_PATH: &str = "/etc/skiff/registries.yaml";
/// How long containerd may take to answer CRI `Version` after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long containerd gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long before dying restarts with the minimum backoff.
const STABLE_RUN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Registries { path: PathBuf, message: String },
    #[error(
        "containerd is not installed (not found on PATH); install it (Debian/Ubuntu: \
         apt-get install containerd runc) or pass --container-runtime-endpoint"
    )]
    NotInstalled,
    #[error("cannot start {binary}: {message}")]
    Spawn { binary: PathBuf, message: String },
    #[error("containerd exited during start-up ({status}); last lines of {log}:\n{tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the container runtime at {socket} did not answer within {timeout:?}: {source}")]
    NotReady {
        socket: PathBuf,
        timeout: Duration,
        source: CriError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerdError + '_ {
    move |source| ContainerdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------
// cgroup driver

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupDriver {
    Systemd,
    Cgroupfs,
}

/// systemd when it is PID 1 and running (`/run/systemd/system` exists),
/// else cgroupfs (containers, WSL, OpenRC, these test machines).
pub fn detect_cgroup_driver() -> CgroupDriver {
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    cgroup_driver_for(Path::new("/run/systemd/system").is_dir(), &comm)
}

fn cgroup_driver_for(run_systemd_system: bool, pid1_comm: &str) -> CgroupDriver {
    if run_systemd_system && pid1_comm.trim() == "systemd" {
        CgroupDriver::Systemd
    } else {
        CgroupDriver::Cgroupfs
    }
}

// ---------------------------------------------------------------------------
// registries.yaml (k3s format)

/// `/etc/skiff/registries.yaml`: mirrors per registry host and per-host
/// credentials and TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Accepted for k3s compatibility; containerd 1.6 cannot rewrite.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<RegistryAuth>,
    #[serde(default)]
    pub tls: Option<RegistryTls>,
}

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<String>,
    #[serde(alias = "identity_token")]
    pub identitytoken: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field(
                "identitytoken",
                &self.identitytoken.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

/// Parses registries.yaml text; `path` only names the file in errors.
pub fn parse_registries(path: &Path, text: &str) -> Result<Registries, ContainerdError> {
    let err = |message: String| ContainerdError::Registries {
        path: path.to_path_buf(),
        message,
    };
    if text.trim().is_empty() {
        return Ok(Registries::default());
    }
    let regs: Registries = serde_yaml_ng::from_str(text)
        .map_err(|e| err(format!("malformed registries file: {e}")))?;
    for (host, m) in &regs.mirrors {
        if host.is_empty() {
            return Err(err("a mirror has an empty registry name".into()));
        }
        if m.endpoint.iter().any(|e| e.trim().is_empty()) {
            return Err(err(format!("mirrors.{host}: empty endpoint")));
        }
        if !m.rewrite.is_empty() {
            tracing::warn!(registry = %host, "registries.yaml: `rewrite` is not supported by containerd 1.6; ignored");
        }
    }
    if regs.configs.keys().any(String::is_empty) {
        return Err(err("a config has an empty registry name".into()));
    }
    Ok(regs)
}

/// Reads registries.yaml; `None` when the file does not exist.
pub fn load_registries(path: &Path) -> Result<Option<Registries>, ContainerdError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_registries(path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ContainerdError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

// ---------------------------------------------------------------------------
// config rendering

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

/// Where runc keeps container state for this containerd (not the shared
/// `/run/containerd/runc`).
pub fn runc_root(cfg: &AgentConfig) -> PathBuf {
    cfg.containerd_dir().join("runc")
}

/// The socket of the containerd skiff runs.
pub fn socket_path(cfg: &AgentConfig) -> PathBuf {
    cfg.containerd_dir().join("containerd.sock")
}

/// containerd 1.6 configuration (schema version 2) for this agent.
pub fn render_config(
    cfg: &AgentConfig,
    cgroup: CgroupDriver,
    registries: Option<&Registries>,
) -> String {
    let dir = cfg.containerd_dir();
    let cri = "[plugins.\"io.containerd.grpc.v1.cri\"";
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Generated by skiff; rewritten at every start. Do not edit."
    );
    let _ = writeln!(s, "version = 2");
    let _ = writeln!(s, "root = {}", toml_path(&dir.join("root")));
    let _ = writeln!(s, "state = {}", toml_path(&dir.join("state")));
    let _ = writeln!(
        s,
        "disabled_plugins = [\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", \
         \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\"]"
    );
    let _ = writeln!(s, "\n[grpc]\n  address = {}", toml_path(&socket_path(cfg)));
    let _ = writeln!(
        s,
        "\n[ttrpc]\n  address = {}",
        toml_path(&dir.join("containerd.sock.ttrpc"))
    );
    let _ = writeln!(
        s,
        "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}",
        toml_path(&dir.join("opt"))
    );
    let _ = writeln!(s, "\n{cri}]");
    let _ = writeln!(s, "  sandbox_image = {}", toml_str(PAUSE_IMAGE));
    // No CAP_SYS_RESOURCE in many sandboxes/VMs: a negative oom_score_adj
    // for the pause container would make runc fail.
    let _ = writeln!(s, "  restrict_oom_score_adj = true");
    let _ = writeln!(s, "  enable_selinux = false");
    let _ = writeln!(s, "  stream_server_address = \"127.0.0.1\"");
    let _ = writeln!(s, "  stream_server_port = \"0\"");
    let _ = writeln!(s, "  {cri}.containerd]");
    let _ = writeln!(s, "    snapshotter = \"overlayfs\"");
    let _ = writeln!(s, "    default_runtime_name = \"runc\"");
    let _ = writeln!(s, "    {cri}.containerd.runtimes.runc]");
    let _ = writeln!(s, "      runtime_type = \"io.containerd.runc.v2\"");
    let _ = writeln!(s, "      {cri}.containerd.runtimes.runc.options]");
    let _ = writeln!(
        s,
        "        SystemdCgroup = {}",
        cgroup == CgroupDriver::Systemd
    );
    let _ = writeln!(s, "        Root = {}", toml_path(&runc_root(cfg)));
    let _ = writeln!(s, "  {cri}.cni]");
    let _ = writeln!(s, "    bin_dir = {}", toml_path(&cfg.cni_bin_dir()));
    let _ = writeln!(s, "    conf_dir = {}", toml_path(&cfg.cni_conf_dir()));
    let _ = writeln!(s, "    max_conf_num = 1");
    if let Some(regs) = registries {
        render_registries(&mut s, cri, regs);
    }
    s
}

fn render_registries(s: &mut String, cri: &str, regs: &Registries) {
    for (host, mirror) in &regs.mirrors {
        let endpoints: Vec<String> = mirror.endpoint.iter().map(|e| toml_str(e)).collect();
        let _ = writeln!(s, "  {cri}.registry.mirrors.{}]", toml_str(host));
        let _ = writeln!(s, "    endpoint = [{}]", endpoints.join(", "));
    }
    for (host, conf) in &regs.configs {
        if let Some(auth) = &conf.auth {
            let _ = writeln!(s, "  {cri}.registry.configs.{}.auth]", toml_str(host));
            let fields = [
                ("username", &auth.username),
                ("password", &auth.password),
                ("auth", &auth.auth),
                ("identitytoken", &auth.identitytoken),
            ];
            for (key, value) in fields {
                if let Some(v) = value {
                    let _ = writeln!(s, "    {key} = {}", toml_str(v));
                }
            }
        }
        if let Some(tls) = &conf.tls {
            let _ = writeln!(s, "  {cri}.registry.configs.{}.tls]", toml_str(host));
            for (key, value) in [
                ("ca_file", &tls.ca_file),
                ("cert_file", &tls.cert_file),
                ("key_file", &tls.key_file),
            ] {
                if let Some(v) = value {
                    let _ = writeln!(s, "    {key} = {}", toml_str(v));
                }
            }
            if let Some(v) = tls.insecure_skip_verify {
                let _ = writeln!(s, "    insecure_skip_verify = {v}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// the process

/// containerd for this agent: a supervised child, or an existing runtime
/// at `--container-runtime-endpoint`.
pub struct Containerd {
    socket: PathBuf,
    child: Option<ChildSpec>,
}

/// What a restart needs, and the running child.
struct ChildSpec {
    binary: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    pid_path: PathBuf,
    running: Option<Running>,
}

struct Running {
    pid: u32,
    started: Instant,
    exited: oneshot::Receiver<String>,
}

impl Containerd {
    /// Writes the config, stops a stale containerd from a previous run,
    /// starts containerd and waits until CRI answers. With an external
    /// endpoint, only waits for it to answer.
    pub async fn start(
        cfg: &AgentConfig,
        registries_path: &Path,
    ) -> Result<Containerd, ContainerdError> {
        if let Some(endpoint) = &cfg.container_runtime_endpoint {
            wait_cri(endpoint).await?;
            return Ok(Containerd {
                socket: endpoint.clone(),
                child: None,
            });
        }
        let registries = load_registries(registries_path)?;
        let dir = cfg.containerd_dir();
        create_private_dir(&dir)?;
        for d in [cfg.cni_conf_dir(), cfg.cni_bin_dir()] {
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let config_path = dir.join("containerd.toml");
        let text = render_config(cfg, detect_cgroup_driver(), registries.as_ref());
        write_private(&config_path, text.as_bytes())?;
        let binary = find_on_path("containerd").ok_or(ContainerdError::NotInstalled)?;
        let mut spec = ChildSpec {
            binary,
            config_path,
            log_path: dir.join("containerd.log"),
            pid_path: dir.join("containerd.pid"),
            running: None,
        };
        stop_stale(&spec.pid_path, &spec.config_path).await;
        let socket = socket_path(cfg);
        spec.start(&socket).await?;
        Ok(Containerd {
            socket,
            child: Some(spec),
        })
    }

    /// The CRI / containerd socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// PID of the running child, `None` for an external runtime.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?.running.as_ref().map(|r| r.pid)
    }

    /// Keeps containerd running until `stop` turns true: a dead child is
    /// restarted (backoff 1 s doubling to 30 s, reset after a minute of good
    /// health); on stop it gets SIGTERM, then SIGKILL after 10 s.
    pub async fn supervise(self, mut stop: watch::Receiver<bool>) {
        let Some(mut spec) = self.child else {
            stopped(&mut stop).await;
            return;
        };
        let socket = self.socket;
        // the delay before the next restart
        let mut backoff = BACKOFF_MIN;
        loop {
            let Some(running) = spec.running.as_mut() else {
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                let started = tokio::select! {
                    r = spec.start(&socket) => Some(r),
                    _ = stopped(&mut stop) => None,
                };
                match started {
                    None => {
                        spec.terminate().await;
                        return;
                    }
                    Some(Err(e)) => {
                        tracing::error!("cannot restart containerd (next try in {backoff:?}): {e}")
                    }
                    Some(Ok(())) => {}
                }
                continue;
            };
            tokio::select! {
                _ = stopped(&mut stop) => {
                    spec.terminate().await;
                    return;
                }
                status = &mut running.exited => {
                    let status = status.unwrap_or_else(|_| "unknown status".into());
                    if running.started.elapsed() >= STABLE_RUN {
                        backoff = BACKOFF_MIN;
                    }
                    tracing::error!(
                        pid = running.pid,
                        log = %spec.log_path.display(),
                        "containerd exited ({status}); restarting in {backoff:?}"
                    );
                    spec.running = None;
                    let _ = std::fs::remove_file(&spec.pid_path);
                }
            }
        }
    }
}

/// Resolves once stop is requested (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it right here.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

impl ChildSpec {
    /// Spawns containerd and waits for CRI; on failure nothing is left
    /// running. The child is recorded in `self.running` before any await,
    /// so a caller that drops this future can still `terminate` it.
    async fn start(&mut self, socket: &Path) -> Result<(), ContainerdError> {
        let running = spawn(&self.binary, &self.config_path, &self.log_path)?;
        let _ = std::fs::write(&self.pid_path, format!("{}\n", running.pid));
        let pid = running.pid;
        let running = self.running.insert(running);
        let not_ready = |source| ContainerdError::NotReady {
            socket: socket.to_path_buf(),
            timeout: READY_TIMEOUT,
            source,
        };
        let outcome = match Cri::new(socket) {
            Err(source) => Err(not_ready(source)),
            Ok(cri) => tokio::select! {
                ready = cri.wait_ready(READY_TIMEOUT) => match ready {
                    Ok(v) => {
                        tracing::info!(pid, version = %v.runtime_version, "containerd ready");
                        return Ok(());
                    }
                    Err(source) => Err(not_ready(source)),
                },
                status = &mut running.exited => Ok(status.unwrap_or_else(|_| "unknown status".into())),
            },
        };
        match outcome {
            Ok(status) => {
                self.running = None;
                let _ = std::fs::remove_file(&self.pid_path);
                Err(ContainerdError::Exited {
                    status,
                    log: self.log_path.clone(),
                    tail: log_tail(&self.log_path, 20),
                })
            }
            Err(e) => {
                self.terminate().await;
                Err(e)
            }
        }
    }

    async fn terminate(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        signal(running.pid, libc::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, &mut running.exited)
            .await
            .is_err()
        {
            tracing::warn!(
                pid = running.pid,
                "containerd ignored SIGTERM for {STOP_TIMEOUT:?}; killing it"
            );
            signal(running.pid, libc::SIGKILL);
            let _ = (&mut running.exited).await;
        }
        let _ = std::fs::remove_file(&self.pid_path);
        tracing::info!(pid = running.pid, "containerd stopped");
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: plain syscall; the pid is our unreaped child, so it cannot
        // have been recycled for another process.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Starts containerd from a dedicated thread that then waits for it: the
/// parent-death signal fires when the *thread* that forked exits, so that
/// thread must live exactly as long as the child.
fn spawn(binary: &Path, config: &Path, log_path: &Path) -> Result<Running, ContainerdError> {
    let spawn_err = |message: String| ContainerdError::Spawn {
        binary: binary.to_path_buf(),
        message,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path)
        .map_err(io_err(log_path))?;
    let log2 = log.try_clone().map_err(io_err(log_path))?;
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, setpgid, getppid) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Own process group: a Ctrl-C on skiff's terminal must not
            // reach containerd directly; skiff stops it in order.
            libc::setpgid(0, 0);
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other(
                    "skiff exited while starting containerd",
                ));
            }
            Ok(())
        });
    }
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("containerd-child".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Ok(child.id()));
                let status = match child.wait() {
                    Ok(s) => describe_exit(s),
                    Err(e) => format!("wait failed: {e}"),
                };
                let _ = exit_tx.send(status);
            }
            Err(e) => {
                let _ = pid_tx.send(Err(e.to_string()));
            }
        })
        .map_err(|e| spawn_err(format!("cannot create a thread: {e}")))?;
    let pid = pid_rx
        .recv()
        .map_err(|_| spawn_err("spawner thread died".into()))?
        .map_err(spawn_err)?;
    tracing::info!(pid, config = %config.display(), log = %log_path.display(), "containerd started");
    Ok(Running {
        pid,
        started: Instant::now(),
        exited: exit_rx,
    })
}

fn describe_exit(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

/// Stops a containerd that a previous skiff started with this config (its
/// pid file survived a crash, or it is still shutting down).
async fn stop_stale(pid_path: &Path, config_path: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let alive = |pid: i32| -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_containerd = args.first().is_some_and(|a| a.ends_with(b"containerd"));
        let our_config = args.contains(&config_path.as_os_str().as_encoded_bytes());
        // a zombie has an empty cmdline: nothing left to stop
        is_containerd && our_config
    };
    if pid <= 1 || !alive(pid) {
        let _ = std::fs::remove_file(pid_path);
        return;
    }
    tracing::warn!(pid, "stopping containerd left over from a previous run");
    // SAFETY: plain syscalls on a pid checked just above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(pid) {
        if Instant::now() >= deadline {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(pid_path);
}

async fn wait_cri(socket: &Path) -> Result<(), ContainerdError> {
    let not_ready = |source| ContainerdError::NotReady {
        socket: socket.to_path_buf(),
        timeout: READY_TIMEOUT,
        source,
    };
    let cri = Cri::new(socket).map_err(not_ready)?;
    cri.wait_ready(READY_TIMEOUT).await.map_err(not_ready)?;
    Ok(())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn create_private_dir(dir: &Path) -> Result<(), ContainerdError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Atomic 0600 write (the config may hold registry passwords).
fn write_private(path: &Path, data: &[u8]) -> Result<(), ContainerdError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(16 << 10)..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AgentConfig {
        AgentConfig::with_defaults("/var/lib/skiff/agent", "n1", "10.0.0.1".parse().unwrap())
    }

    #[test]
    fn cgroup_driver_needs_systemd_as_pid1() {
        let cases = [
            (true, "systemd\n", CgroupDriver::Systemd),
            (true, "init", CgroupDriver::Cgroupfs),
            (false, "systemd", CgroupDriver::Cgroupfs),
            (false, "", CgroupDriver::Cgroupfs),
        ];
        for (dir, comm, want) in cases {
            assert_eq!(cgroup_driver_for(dir, comm), want, "{dir} {comm:?}");
        }
    }

    #[test]
    fn config_has_the_required_settings() {
        let text = render_config(&cfg(), CgroupDriver::Cgroupfs, None);
        let d = "/var/lib/skiff/agent";
        let want = [
            "version = 2\n".to_string(),
            format!("root = \"{d}/containerd/root\""),
            format!("state = \"{d}/containerd/state\""),
            format!("[grpc]\n  address = \"{d}/containerd/containerd.sock\""),
            format!("[ttrpc]\n  address = \"{d}/containerd/containerd.sock.ttrpc\""),
            format!("path = \"{d}/containerd/opt\""),
            format!("sandbox_image = \"{PAUSE_IMAGE}\""),
            "restrict_oom_score_adj = true".into(),
            "enable_selinux = false".into(),
            "snapshotter = \"overlayfs\"".into(),
            "runtime_type = \"io.containerd.runc.v2\"".into(),
            "SystemdCgroup = false".into(),
            format!("Root = \"{d}/containerd/runc\""),
            format!("bin_dir = \"{d}/bin\""),
            format!("conf_dir = \"{d}/etc/cni/net.d\""),
            "max_conf_num = 1".into(),
            "\"io.containerd.snapshotter.v1.devmapper\"".into(),
        ];
        for w in want {
            assert!(text.contains(&w), "missing {w:?} in\n{text}");
        }
        assert!(!text.contains("registry"));
        let systemd = render_config(&cfg(), CgroupDriver::Systemd, None);
        assert!(systemd.contains("SystemdCgroup = true"));
    }

    #[test]
    fn registries_render_into_the_cri_section() {
        let yaml = r#"
mirrors:
  docker.io:
    endpoint: ["https://mirror.example:5000", "http://10.0.0.5"]
  "*":
    endpoint: ["https://all.example"]
configs:
  "mirror.example:5000":
    auth: {username: u, password: "p\"w", identity_token: tok}
    tls: {ca_file: /etc/ca.pem, insecure_skip_verify: true}
  other.example:
    tls: {cert_file: /c.pem, key_file: /k.pem}
"#;
        let regs = parse_registries(Path::new("/etc/skiff/registries.yaml"), yaml).unwrap();
        let text = render_config(&cfg(), CgroupDriver::Cgroupfs, Some(&regs));
        let cri = "[plugins.\"io.containerd.grpc.v1.cri\".registry";
        let want = [
            format!(
                "{cri}.mirrors.\"docker.io\"]\n    endpoint = [\"https://mirror.example:5000\", \"http://10.0.0.5\"]"
            ),
            format!("{cri}.mirrors.\"*\"]\n    endpoint = [\"https://all.example\"]"),
            format!(
                "{cri}.configs.\"mirror.example:5000\".auth]\n    username = \"u\"\n    password = \"p\\\"w\"\n    identitytoken = \"tok\""
            ),
            format!(
                "{cri}.configs.\"mirror.example:5000\".tls]\n    ca_file = \"/etc/ca.pem\"\n    insecure_skip_verify = true"
            ),
            format!(
                "{cri}.configs.\"other.example\".tls]\n    cert_file = \"/c.pem\"\n    key_file = \"/k.pem\""
            ),
        ];
        for w in want {
            assert!(text.contains(&w), "missing {w:?} in\n{text}");
        }
        assert!(
            !format!("{regs:?}").contains("p\\\"w"),
            "password leaks through Debug"
        );
    }

    #[test]
    fn bad_registries_files_name_the_file() {
        let path = Path::new("/etc/skiff/registries.yaml");
        let cases = [
            ("mirrors: [1, 2]", "malformed"),
            ("mirror:\n  docker.io: {}", "malformed"),
            (
                "mirrors:\n  docker.io:\n    endpoint: [\"\"]",
                "empty endpoint",
            ),
            ("configs:\n  x:\n    auth: {user: a}", "malformed"),
        ];
        for (yaml, want) in cases {
            let err = parse_registries(path, yaml).unwrap_err().to_string();
            assert!(err.starts_with("/etc/skiff/registries.yaml: "), "{err}");
            assert!(err.contains(want), "{yaml}: {err}");
        }
        assert_eq!(parse_registries(path, "").unwrap(), Registries::default());
        assert_eq!(
            parse_registries(path, "# nothing\n").unwrap(),
            Registries::default()
        );
    }

    #[test]
    fn toml_strings_escape() {
        let cases = [
            ("a", "\"a\""),
            ("a\"b", "\"a\\\"b\""),
            ("c:\\x", "\"c:\\\\x\""),
            ("\u{1}", "\"\\u0001\""),
        ];
        for (input, want) in cases {
            assert_eq!(toml_str(input), want);
        }
    }
}
