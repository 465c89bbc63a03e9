//! containerd supervisor + image import against a real containerd, driven
//! through CRI: the built-in pause image as sandbox image, busybox images
//! from OCI-layout, docker-save and uncompressed tarballs, a corrupt tarball,
//! a SIGKILLed containerd restarted by `supervise`, and a no-op re-import.
//!
//! Needs root and `containerd`/`runc` on PATH (CI runs as root with them
//! installed); otherwise it prints why and passes without testing anything.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skiff::agent::AgentConfig;
use skiff::agent::containerd::Containerd;
use skiff::agent::images::{self, Outcome, PAUSE_IMAGE};
use skiff::kubelet::cri::{Cri, api};

const MKIMAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools/mkimage.py");

fn skip_reason() -> Option<String> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for bin in ["containerd", "runc", "python3"] {
        if !Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {bin} >/dev/null"))
            .status()
            .is_ok_and(|s| s.success())
        {
            return Some(format!("{bin} is not on PATH"));
        }
    }
    if !Path::new(MKIMAGE).exists() {
        return Some(format!("{MKIMAGE} is missing"));
    }
    None
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rewrites an mkimage OCI tarball into a classic `docker save` archive:
/// `<config>.json`, `<id>/layer.tar` (uncompressed), `manifest.json` only.
fn docker_save_variant(src: &Path, dst: &Path, name: &str) {
    let script = r#"
import gzip, hashlib, io, json, sys, tarfile
src, dst, name = sys.argv[1:4]
with tarfile.open(src) as t:
    blobs = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
m = json.loads(blobs["manifest.json"])[0]
config = blobs[m["Config"]]
out = tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT)
def add(path, data):
    ti = tarfile.TarInfo(path); ti.size = len(data); ti.mode = 0o644
    out.addfile(ti, io.BytesIO(data))
chex = hashlib.sha256(config).hexdigest()
add(chex + ".json", config)
layers = []
for i, l in enumerate(m["Layers"]):
    data = blobs[l]
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    lid = hashlib.sha256(b"%d" % i + data).hexdigest()
    add(lid + "/VERSION", b"1.0")
    add(lid + "/layer.tar", data)
    layers.append(lid + "/layer.tar")
add("manifest.json", json.dumps([{"Config": chex + ".json", "RepoTags": [name], "Layers": layers}]).encode())
out.close()
"#;
    run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(src)
        .arg(dst)
        .arg(name));
}

fn make_images(dir: &Path, scratch: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    // OCI layout (gzip layer), the form mkimage writes
    run(Command::new("python3")
        .args([MKIMAGE, "busybox", "--name", "skiff.test/busybox:1", "-o"])
        .arg(dir.join("busybox.tar")));
    // uncompressed layer, whole tarball gzip'd
    let raw = scratch.join("busybox-raw.tar");
    run(Command::new("python3")
        .args([
            MKIMAGE,
            "busybox",
            "--uncompressed",
            "--name",
            "skiff.test/busybox-raw:1",
            "-o",
        ])
        .arg(&raw));
    run(Command::new("sh").arg("-c").arg(format!(
        "gzip -c {} > {}",
        raw.display(),
        dir.join("busybox-raw.tar.gz").display()
    )));
    // docker save only
    docker_save_variant(
        &dir.join("busybox.tar"),
        &dir.join("busybox-docker.tgz"),
        "skiff.test/busybox-docker:1",
    );
    // corrupt
    std::fs::write(
        dir.join("broken.tar"),
        b"this is not a tar archive at all, but it is long enough to look at",
    )
    .unwrap();
    // not an image tarball name: ignored
    std::fs::write(dir.join("README.txt"), b"ignored").unwrap();
}

fn sandbox_config(name: &str, log_dir: &Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("runtime-test-{name}"),
            namespace: "runtime-test".into(),
            attempt: 0,
        }),
        log_directory: log_dir.display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Node as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn run_container(
    cri: &Cri,
    sandbox_id: &str,
    sandbox: &api::PodSandboxConfig,
    name: &str,
    image: &str,
    command: &[&str],
) -> String {
    let mut rt = cri.runtime.clone();
    let config = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    };
    let id = rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer {name} ({image}): {e}"))
        .into_inner()
        .container_id;
    rt.start_container(api::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
    id
}

async fn container_status(cri: &Cri, id: &str) -> api::ContainerStatus {
    cri.runtime
        .clone()
        .container_status(api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

async fn wait_exited(cri: &Cri, id: &str) -> api::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = container_status(cri, id).await;
        if s.state == api::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} still {} after 30s",
            s.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_images_and_pods_through_cri() {
    if let Some(reason) = skip_reason() {
        eprintln!("SKIPPED runtime integration test: {reason}");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("runtime-it-")
        .tempdir_in("/tmp")
        .unwrap();
    let agent_dir = tmp.path().join("agent");
    let cfg = test_agent_config(&agent_dir);
    make_images(&cfg.images_dir(), tmp.path());

    let t = Instant::now();
    // containerd must accept the rendered registry section
    let registries = tmp.path().join("registries.yaml");
    std::fs::write(
        &registries,
        "mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.invalid:5000\"]\n\
         configs:\n  mirror.invalid:5000:\n    auth: {username: u, password: secret}\n    \
         tls: {insecure_skip_verify: true}\n",
    )
    .unwrap();
    let ctd = Containerd::start(&cfg, &registries)
        .await
        .expect("containerd starts");
    let config = cfg.containerd_dir().join("containerd.toml");
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("https://mirror.invalid:5000")
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&config), 0o600);
        assert_eq!(mode(&cfg.containerd_dir()), 0o700);
    }
    println!("containerd ready in {:?}", t.elapsed());
    let first_pid = ctd.pid().expect("child pid");
    let pid_file = cfg.containerd_dir().join("containerd.pid");
    assert_eq!(read_pid(&pid_file), Some(first_pid));
    let socket = ctd.socket().to_path_buf();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let supervisor = tokio::spawn(ctd.supervise(stop_rx));

    let result = std::panic::AssertUnwindSafe(exercise(&cfg, &socket, &pid_file, first_pid));
    let outcome = futures::FutureExt::catch_unwind(result).await;

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), supervisor)
        .await
        .expect("supervisor stops")
        .unwrap();
    let last_pid = read_pid(&pid_file);
    assert!(last_pid.is_none(), "pid file removed on stop");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    // containerd gone: the socket no longer answers
    assert!(tokio::net::UnixStream::connect(&socket).await.is_err());
}

async fn exercise(cfg: &AgentConfig, socket: &Path, pid_file: &Path, first_pid: u32) {
    let images_dir = cfg.images_dir();
    let empty = cfg.agent_dir.join("no-images");
    let report = images::import_all(socket, &empty)
        .await
        .expect("import pause");
    println!(
        "import_all of the pause image alone (cold): {:?}",
        report.elapsed
    );
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].outcome, Outcome::Created);
    let report = images::import_all(socket, &empty)
        .await
        .expect("import pause");
    println!(
        "import_all of the pause image alone (present): {:?}",
        report.elapsed
    );
    assert_eq!(report.images[0].outcome, Outcome::Unchanged);

    let report = images::import_all(socket, &images_dir)
        .await
        .expect("import_all");
    println!("first import_all: {:?}", report.elapsed);
    let names: HashMap<&str, Outcome> = report
        .images
        .iter()
        .map(|i| (i.name.as_str(), i.outcome))
        .collect();
    assert_eq!(names.get(PAUSE_IMAGE), Some(&Outcome::Unchanged));
    for name in [
        "skiff.test/busybox:1",
        "skiff.test/busybox-raw:1",
        "skiff.test/busybox-docker:1",
    ] {
        assert_eq!(
            names.get(name),
            Some(&Outcome::Created),
            "{name} in {:?}",
            report.images
        );
    }
    assert_eq!(report.images.len(), 4, "{:?}", report.images);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert!(
        report.failures[0].file.ends_with("broken.tar"),
        "{:?}",
        report.failures
    );

    let cri = Cri::new(socket).unwrap();
    let listed = cri
        .image
        .clone()
        .list_images(api::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let tags: Vec<String> = listed
        .images
        .iter()
        .flat_map(|i| i.repo_tags.clone())
        .collect();
    for name in [
        PAUSE_IMAGE,
        "skiff.test/busybox:1",
        "skiff.test/busybox-raw:1",
        "skiff.test/busybox-docker:1",
    ] {
        assert!(tags.iter().any(|t| t == name), "CRI lists {name}: {tags:?}");
    }

    // A pod on the host network (no CNI conf needed) whose sandbox is the
    // built-in pause image.
    let log_dir = cfg.pod_logs_dir().join("runtime-test_p1_uid");
    std::fs::create_dir_all(&log_dir).unwrap();
    let sandbox = sandbox_config("p1", &log_dir);
    let mut rt = cri.runtime.clone();
    let t = Instant::now();
    let sandbox_id = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox with the built-in pause image")
        .into_inner()
        .pod_sandbox_id;
    println!("RunPodSandbox: {:?}", t.elapsed());

    for (name, image) in [
        ("c-oci", "skiff.test/busybox:1"),
        ("c-raw", "skiff.test/busybox-raw:1"),
        ("c-docker", "skiff.test/busybox-docker:1"),
    ] {
        let id = run_container(&cri, &sandbox_id, &sandbox, name, image, &["echo", "hello"]).await;
        let status = wait_exited(&cri, &id).await;
        assert_eq!(status.exit_code, 0, "{name}: {status:?}");
        let log = std::fs::read_to_string(log_dir.join(name).join("0.log")).unwrap();
        assert!(log.contains(" stdout F hello"), "{name} log: {log:?}");
        rt.remove_container(api::RemoveContainerRequest { container_id: id })
            .await
            .unwrap();
    }

    // The pause program as a container of its own: SIGTERM ends it, exit 0.
    let id = run_container(&cri, &sandbox_id, &sandbox, "c-pause", PAUSE_IMAGE, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while container_status(&cri, &id).await.state != api::ContainerState::ContainerRunning as i32 {
        assert!(Instant::now() < deadline, "pause container never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    rt.stop_container(api::StopContainerRequest {
        container_id: id.clone(),
        timeout: 10,
    })
    .await
    .unwrap();
    let stop_time = t.elapsed();
    let status = wait_exited(&cri, &id).await;
    println!(
        "pause container stopped by SIGTERM in {stop_time:?}, exit code {}",
        status.exit_code
    );
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert!(
        stop_time < Duration::from_secs(5),
        "pause ignored SIGTERM ({stop_time:?})"
    );
    rt.remove_container(api::RemoveContainerRequest { container_id: id })
        .await
        .unwrap();

    // runc state is private to this containerd
    let runc_root = cfg.containerd_dir().join("runc").join("k8s.io");
    assert!(
        runc_root.join(&sandbox_id).is_dir(),
        "sandbox state under {}",
        runc_root.display()
    );

    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: sandbox_id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox_id,
    })
    .await
    .unwrap();

    // A second import is a fast no-op.
    let report = images::import_all(socket, &images_dir)
        .await
        .expect("second import_all");
    println!("second import_all: {:?}", report.elapsed);
    assert!(
        report
            .images
            .iter()
            .all(|i| i.outcome == Outcome::Unchanged),
        "{:?}",
        report.images
    );
    assert_eq!(report.images.len(), 4);
    assert_eq!(report.failures.len(), 1);
    // Without the record of imported tarballs they are read again, and
    // still found unchanged.
    std::fs::remove_file(images_dir.join(".skiff-import-cache.json")).unwrap();
    let report = images::import_all(socket, &images_dir)
        .await
        .expect("third import_all");
    println!("import_all re-reading the tarballs: {:?}", report.elapsed);
    assert!(
        report
            .images
            .iter()
            .all(|i| i.outcome == Outcome::Unchanged),
        "{:?}",
        report.images
    );
    assert_eq!(report.images.len(), 4);

    // SIGKILL containerd: the supervisor restarts it and CRI answers again.
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(first_pid as i32, libc::SIGKILL) };
    let t = Instant::now();
    let deadline = t + Duration::from_secs(30);
    loop {
        if let Some(pid) = read_pid(pid_file)
            && pid != first_pid
            && cri
                .runtime
                .clone()
                .version(api::VersionRequest::default())
                .await
                .is_ok()
        {
            println!("containerd restarted as pid {pid} after {:?}", t.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "containerd was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // images survive the restart
    let status = cri
        .image
        .clone()
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: PAUSE_IMAGE.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.image.is_some());
}

fn test_agent_config(agent_dir: &Path) -> AgentConfig {
    AgentConfig::with_defaults(agent_dir, "runtime-test", "127.0.0.1".parse().unwrap())
}

/// Not a test on its own: the child process of `containerd_dies_with_skiff`
/// (runs only with RUNTIME_HELPER_DIR set). Starts containerd, reports its
/// pid on stdout, then waits to be killed.
#[tokio::test]
#[ignore = "helper process for containerd_dies_with_skiff"]
async fn helper_start_containerd_and_wait() {
    let Some(dir) = std::env::var_os("RUNTIME_HELPER_DIR") else {
        return;
    };
    let cfg = test_agent_config(&Path::new(&dir).join("agent"));
    let ctd = Containerd::start(&cfg, Path::new("/nonexistent/registries.yaml"))
        .await
        .expect("containerd starts");
    println!("CONTAINERD_PID={}", ctd.pid().unwrap());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    ctd.supervise(rx).await;
}

/// SIGKILL the process that runs the supervisor: containerd must not
/// outlive it (parent-death signal), and the next start must cope with
/// the pid file left behind.
#[test]
fn containerd_dies_with_skiff() {
    if let Some(reason) = skip_reason() {
        eprintln!("SKIPPED runtime integration test: {reason}");
        return;
    }
    use std::io::BufRead;
    let tmp = tempfile::Builder::new()
        .prefix("runtime-pd-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_start_containerd_and_wait",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUNTIME_HELPER_DIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // libtest may print "test … ... " before the line on the same line
        let pid = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split("CONTAINERD_PID=")
                    .nth(1)
                    .and_then(|p| p.trim().parse::<i32>().ok())
            });
        let _ = tx.send(pid);
    });
    let pid = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(Some(pid)) => pid,
        other => {
            let _ = child.kill();
            panic!("helper did not report a containerd pid: {other:?}");
        }
    };
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(alive(pid));
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "containerd {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("containerd exited after its parent was SIGKILLed");
}
