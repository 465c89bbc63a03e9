//! Pure probe logic: parameters with upstream defaults, the threshold state
//! machine of one probe worker, probe targets (port by number or name, the
//! URL of an httpGet), and the texts of `Unhealthy` events.
//!
//! Invariants: no I/O, no clock. A liveness or startup worker whose failure
//! threshold is reached reports once and then holds (the container is
//! about to be replaced); readiness reports every transition.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// As in event messages (`Liveness probe failed: …`).
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// Timing and thresholds of one probe, defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeParams {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn positive(v: Option<i32>, default: i32) -> u64 {
    match v {
        Some(n) if n > 0 => n as u64,
        _ => default as u64,
    }
}

impl ProbeParams {
    /// Upstream defaults: period 10s, timeout 1s, thresholds 1 / 3; liveness
    /// and startup always use a success threshold of 1.
    pub fn from_probe(p: &Probe, kind: ProbeKind) -> ProbeParams {
        ProbeParams {
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            period: Duration::from_secs(positive(p.period_seconds, 10)),
            timeout: Duration::from_secs(positive(p.timeout_seconds, 1)),
            success_threshold: match kind {
                ProbeKind::Readiness => positive(p.success_threshold, 1) as u32,
                _ => 1,
            },
            failure_threshold: positive(p.failure_threshold, 3) as u32,
        }
    }
}

/// The threshold state machine of one worker.
#[derive(Clone, Debug)]
pub struct ProbeState {
    kind: ProbeKind,
    params: ProbeParams,
    last: Option<bool>,
    run: u32,
    reported: Option<bool>,
    on_hold: bool,
}

impl ProbeState {
    /// Readiness starts not ready, liveness alive, startup unknown.
    pub fn new(kind: ProbeKind, params: ProbeParams) -> ProbeState {
        ProbeState {
            kind,
            params,
            last: None,
            run: 0,
            reported: match kind {
                ProbeKind::Readiness => Some(false),
                ProbeKind::Liveness => Some(true),
                ProbeKind::Startup => None,
            },
            on_hold: false,
        }
    }

    /// The result currently reported (None: startup not decided yet).
    pub fn reported(&self) -> Option<bool> {
        self.reported
    }

    /// Held after a liveness/startup failure: no more probing.
    pub fn on_hold(&self) -> bool {
        self.on_hold
    }

    /// Feed one probe result; returns the new reported result when it
    /// changed.
    pub fn observe(&mut self, success: bool) -> Option<bool> {
        if self.on_hold {
            return None;
        }
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.params.success_threshold
        } else {
            self.params.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        if !success && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup) {
            self.on_hold = true;
            self.run = 0;
        }
        if self.reported == Some(success) {
            return None;
        }
        self.reported = Some(success);
        Some(success)
    }
}

/// A probe port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    format!("couldn't find port: {s} in container {}", container.name)
                })?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

/// The host a network probe dials: its `host` field, else the pod IP.
pub fn probe_host(host: Option<&str>, pod_ip: Option<IpAddr>) -> Result<String, String> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => Ok(h.to_string()),
        None => pod_ip
            .map(|ip| ip.to_string())
            .ok_or_else(|| "the pod has no IP address yet".to_string()),
    }
}

/// `host:port` as written in a URL or a dial error (`[v6]:port`).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The URL an httpGet probe requests.
pub fn http_url(scheme: &str, host: &str, port: u16, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("{scheme}://{}{path}", host_port(host, port))
}

/// The text after `dial tcp <addr>: ` in Go's errors for a failed connect.
pub fn dial_error_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connect: connection refused".into(),
        K::HostUnreachable => "connect: no route to host".into(),
        K::NetworkUnreachable => "connect: network is unreachable".into(),
        K::TimedOut => "i/o timeout".into(),
        K::ConnectionReset => "read: connection reset by peer".into(),
        _ => e.to_string(),
    }
}

/// Duration as Go prints whole seconds (`1s`, `30s`).
pub fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// What one probe run found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Success with a remark (redirect to another host).
    Warning(String),
    Failure(String),
    /// The probe could not be run at all (runtime error).
    Error(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success | Outcome::Warning(_))
    }

    /// The event (reason, message) to record, if any.
    pub fn event(&self, kind: ProbeKind) -> Option<(&'static str, String)> {
        let k = kind.label();
        match self {
            Outcome::Success => None,
            Outcome::Warning(m) => Some(("ProbeWarning", format!("{k} probe warning: {m}"))),
            Outcome::Failure(m) => Some(("Unhealthy", format!("{k} probe failed: {m}"))),
            Outcome::Error(m) => Some(("Unhealthy", format!("{k} probe errored: {m}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn params(success: u32, failure: u32) -> ProbeParams {
        ProbeParams {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn threshold_table() {
        // (kind, success threshold, failure threshold, results, expected
        // reports after each result)
        type Case = (
            ProbeKind,
            u32,
            u32,
            &'static [bool],
            &'static [Option<bool>],
        );
        let cases: &[Case] = &[
            (
                ProbeKind::Readiness,
                1,
                3,
                &[true, false, false, false, true],
                &[Some(true), None, None, Some(false), Some(true)],
            ),
            (
                ProbeKind::Readiness,
                2,
                1,
                &[true, true, true, false, true, false],
                &[None, Some(true), None, Some(false), None, None],
            ),
            (
                ProbeKind::Liveness,
                1,
                2,
                &[true, false, true, false, false, false],
                &[None, None, None, None, Some(false), None],
            ),
            (
                ProbeKind::Startup,
                1,
                3,
                &[false, false, true],
                &[None, None, Some(true)],
            ),
            (
                ProbeKind::Startup,
                1,
                2,
                &[false, false, true],
                &[None, Some(false), None],
            ),
        ];
        for (i, (kind, s, f, results, want)) in cases.iter().enumerate() {
            let mut st = ProbeState::new(*kind, params(*s, *f));
            let got: Vec<Option<bool>> = results.iter().map(|r| st.observe(*r)).collect();
            assert_eq!(&got, want, "case {i} ({kind:?})");
        }
        let mut live = ProbeState::new(ProbeKind::Liveness, params(1, 1));
        assert_eq!(live.observe(false), Some(false));
        assert!(live.on_hold());
        assert_eq!(live.reported(), Some(false));
    }

    #[test]
    fn defaults() {
        let p = ProbeParams::from_probe(&Probe::default(), ProbeKind::Readiness);
        assert_eq!(
            p,
            ProbeParams {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let probe = Probe {
            success_threshold: Some(5),
            period_seconds: Some(0),
            initial_delay_seconds: Some(7),
            ..Default::default()
        };
        let live = ProbeParams::from_probe(&probe, ProbeKind::Liveness);
        assert_eq!(live.success_threshold, 1);
        assert_eq!(live.period, Duration::from_secs(10));
        assert_eq!(live.initial_delay, Duration::from_secs(7));
        assert_eq!(
            ProbeParams::from_probe(&probe, ProbeKind::Readiness).success_threshold,
            5
        );
    }

    #[test]
    fn ports_hosts_urls() {
        let c = Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let cases = [
            (IntOrString::Int(80), Ok(80)),
            (IntOrString::String("http".into()), Ok(8080)),
            (IntOrString::String("9090".into()), Ok(9090)),
            (
                IntOrString::String("grpc".into()),
                Err("couldn't find port: grpc in container app".to_string()),
            ),
            (
                IntOrString::Int(70000),
                Err("invalid port number: 70000".to_string()),
            ),
        ];
        for (port, want) in cases {
            assert_eq!(resolve_port(&port, &c), want, "{port:?}");
        }
        let ip: IpAddr = "10.42.0.5".parse().unwrap();
        assert_eq!(probe_host(None, Some(ip)).unwrap(), "10.42.0.5");
        assert_eq!(probe_host(Some("db"), Some(ip)).unwrap(), "db");
        assert!(probe_host(Some(""), None).is_err());
        assert_eq!(
            http_url("HTTP", "10.42.0.5", 8080, "healthz"),
            "http://10.42.0.5:8080/healthz"
        );
        assert_eq!(
            http_url("HTTPS", "fd00::1", 443, "/a?b=c"),
            "https://[fd00::1]:443/a?b=c"
        );
    }

    #[test]
    fn event_texts() {
        let cases = [
            (
                Outcome::Failure("HTTP probe failed with statuscode: 500".into()),
                ProbeKind::Liveness,
                Some((
                    "Unhealthy",
                    "Liveness probe failed: HTTP probe failed with statuscode: 500",
                )),
            ),
            (
                Outcome::Failure("dial tcp 10.42.0.5:8080: connect: connection refused".into()),
                ProbeKind::Readiness,
                Some((
                    "Unhealthy",
                    "Readiness probe failed: dial tcp 10.42.0.5:8080: connect: connection refused",
                )),
            ),
            (
                Outcome::Warning("Probe terminated redirects".into()),
                ProbeKind::Readiness,
                Some((
                    "ProbeWarning",
                    "Readiness probe warning: Probe terminated redirects",
                )),
            ),
            (Outcome::Success, ProbeKind::Startup, None),
        ];
        for (o, k, want) in cases {
            assert_eq!(o.event(k), want.map(|(r, m)| (r, m.to_string())), "{o:?}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(dial_error_text(&refused), "connect: connection refused");
        assert_eq!(go_duration(Duration::from_secs(3)), "3s");
    }
}
