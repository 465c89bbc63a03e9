//! Pure core of the in-process metrics-server: parsing a kubelet's
//! `/metrics/resource` text, turning two consecutive scrapes into usage
//! (CPU rate over the window, latest working set), and printing
//! `metrics.k8s.io/v1beta1` objects the way metrics-server does (quantities
//! canonical like `resource.Quantity`, `window` like Go's `Duration`).
//!
//! Invariants: a usage exists only from two points of the same series with
//! strictly increasing timestamps, a non-decreasing counter and the same
//! container start time; a pod is reported only when every container it
//! has in the latest scrape has a usage (HPA must not see partial pods).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One sample line of Prometheus text format 0.0.4.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// Parse the sample lines; comments and unparsable lines are skipped.
pub fn parse_prometheus(text: &str) -> Vec<PromSample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<PromSample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                other => val.push(other),
                            },
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key).trim().to_string(), val);
                }
                c => key.push(c),
            }
        }
        rest = &after[end? + 1..];
    }
    let mut it = rest.split_whitespace();
    let value = match it.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let timestamp_ms = match it.next() {
        Some(t) => Some(t.parse().ok()?),
        None => None,
    };
    Some(PromSample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// One reading of a cumulative CPU counter and a working set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    pub timestamp_ms: i64,
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// Container start time (seconds), to tell a restarted container.
    pub start_s: Option<f64>,
}

/// (namespace, pod)
pub type PodKey = (String, String);

/// What one scrape of one kubelet said.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scrape {
    pub node: Option<Point>,
    pub containers: BTreeMap<PodKey, BTreeMap<String, Point>>,
}

fn seconds_to_ns(v: f64) -> Option<u64> {
    (v.is_finite() && v >= 0.0).then(|| (v * 1e9).round() as u64)
}

fn bytes(v: f64) -> Option<u64> {
    (v.is_finite() && v >= 0.0).then(|| v.round() as u64)
}

impl Scrape {
    /// Build from `/metrics/resource` samples; samples without a timestamp
    /// get `now_ms`.
    pub fn from_samples(samples: &[PromSample], now_ms: i64) -> Scrape {
        let mut s = Scrape::default();
        for x in samples {
            let ts = x.timestamp_ms.unwrap_or(now_ms);
            match x.name.as_str() {
                "node_cpu_usage_seconds_total" => {
                    let p = s.node.get_or_insert_with(Point::default);
                    p.cpu_ns = seconds_to_ns(x.value);
                    p.timestamp_ms = p.timestamp_ms.max(ts);
                }
                "node_memory_working_set_bytes" => {
                    let p = s.node.get_or_insert_with(Point::default);
                    p.memory_bytes = bytes(x.value);
                    p.timestamp_ms = p.timestamp_ms.max(ts);
                }
                "container_cpu_usage_seconds_total"
                | "container_memory_working_set_bytes"
                | "container_start_time_seconds" => {
                    let (Some(ns), Some(pod), Some(c)) = (
                        x.labels.get("namespace"),
                        x.labels.get("pod"),
                        x.labels.get("container"),
                    ) else {
                        continue;
                    };
                    let p = s
                        .containers
                        .entry((ns.clone(), pod.clone()))
                        .or_default()
                        .entry(c.clone())
                        .or_default();
                    match x.name.as_str() {
                        "container_cpu_usage_seconds_total" => {
                            p.cpu_ns = seconds_to_ns(x.value);
                            p.timestamp_ms = p.timestamp_ms.max(ts);
                        }
                        "container_memory_working_set_bytes" => {
                            p.memory_bytes = bytes(x.value);
                            p.timestamp_ms = p.timestamp_ms.max(ts);
                        }
                        _ => p.start_s = Some(x.value).filter(|v| v.is_finite()),
                    }
                }
                _ => {}
            }
        }
        s
    }
}

/// Usage over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub timestamp_ms: i64,
    pub window_ms: i64,
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

/// Usage from two points of one series (see the module invariants).
pub fn usage(prev: &Point, cur: &Point) -> Option<Usage> {
    let window_ms = cur.timestamp_ms - prev.timestamp_ms;
    if window_ms <= 0 {
        return None;
    }
    if let (Some(a), Some(b)) = (prev.start_s, cur.start_s)
        && (a - b).abs() > 1e-3
    {
        return None;
    }
    let (c0, c1) = (prev.cpu_ns?, cur.cpu_ns?);
    if c1 < c0 {
        return None;
    }
    let rate = (u128::from(c1 - c0) * 1000) / window_ms as u128;
    Some(Usage {
        timestamp_ms: cur.timestamp_ms,
        window_ms,
        cpu_nanocores: u64::try_from(rate).ok()?,
        memory_bytes: cur.memory_bytes?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Series {
    last: Point,
    usage: Option<Usage>,
}

fn advance(old: Option<Series>, cur: Point) -> Series {
    match old {
        // the kubelet had no newer sample: keep what we had
        Some(o) if cur.timestamp_ms <= o.last.timestamp_ms => o,
        Some(o) => Series {
            last: cur,
            usage: usage(&o.last, &cur),
        },
        None => Series {
            last: cur,
            usage: None,
        },
    }
}

/// The latest window of one node: its own series and its containers'.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeWindow {
    node: Option<Series>,
    containers: BTreeMap<PodKey, BTreeMap<String, Series>>,
}

impl NodeWindow {
    /// Fold in a new scrape; series absent from it are dropped. Returns
    /// true when something in the scrape still lacks a usage (a quick
    /// re-scrape then fills it in).
    pub fn update(&mut self, s: &Scrape) -> bool {
        let mut pending = false;
        self.node = s.node.map(|p| advance(self.node.take(), p));
        pending |= self.node.is_some_and(|n| n.usage.is_none());
        let mut next: BTreeMap<PodKey, BTreeMap<String, Series>> = BTreeMap::new();
        for (pod, cs) in &s.containers {
            let mut old = self.containers.remove(pod).unwrap_or_default();
            let mut out = BTreeMap::new();
            for (name, p) in cs {
                let series = advance(old.remove(name), *p);
                pending |= series.usage.is_none();
                out.insert(name.clone(), series);
            }
            next.insert(pod.clone(), out);
        }
        self.containers = next;
        pending
    }

    pub fn node_usage(&self) -> Option<Usage> {
        self.node.and_then(|n| n.usage)
    }

    /// Per-container usage of a pod, only when complete.
    pub fn pod_usage(&self, ns: &str, pod: &str) -> Option<Vec<(String, Usage)>> {
        let cs = self.containers.get(&(ns.to_string(), pod.to_string()))?;
        if cs.is_empty() {
            return None;
        }
        cs.iter()
            .map(|(name, s)| s.usage.map(|u| (name.clone(), u)))
            .collect()
    }
}

// ---- printing ----

/// CPU nanocores as metrics-server prints them (`resource.NewScaledQuantity(n, Nano)`).
pub fn cpu_quantity(nanocores: u64) -> String {
    crate::api::quantity::parse_quantity(&format!("{nanocores}n"))
        .map(|q| q.canonical())
        .unwrap_or_else(|| format!("{nanocores}n"))
}

/// Bytes as metrics-server prints them (`resource.NewQuantity(b, BinarySI)`):
/// `Ki`/`Mi`/… when exact, the plain number otherwise, decimal below 1024.
pub fn memory_quantity(bytes: u64) -> String {
    let q = if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    };
    if bytes >= 1024 && !bytes.is_multiple_of(1024) {
        return q;
    }
    crate::api::quantity::parse_quantity(&q)
        .map(|q| q.canonical())
        .unwrap_or(q)
}

/// Milliseconds as Go's `time.Duration.String()`: `15s`, `14.985s`,
/// `1m5.5s`, `500ms`, `0s`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, frac) = (rem / 1000, rem % 1000);
    let mut secs = s.to_string();
    if frac > 0 {
        let f = format!("{frac:03}");
        secs.push('.');
        secs.push_str(f.trim_end_matches('0'));
    }
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp(ms.div_euclid(1000), 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

fn usage_json(u: &Usage) -> Value {
    json!({ "cpu": cpu_quantity(u.cpu_nanocores), "memory": memory_quantity(u.memory_bytes) })
}

fn meta(name: &str, ns: Option<&str>, labels: Option<&Value>, now: &str) -> Value {
    let mut m = json!({ "name": name });
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    m["creationTimestamp"] = json!(now);
    if let Some(l) = labels.filter(|l| l.as_object().is_some_and(|o| !o.is_empty())) {
        m["labels"] = l.clone();
    }
    m
}

/// A `NodeMetrics` object.
pub fn node_metrics(name: &str, labels: Option<&Value>, u: &Usage, now: &str) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta(name, None, labels, now),
        "timestamp": rfc3339_ms(u.timestamp_ms),
        "window": go_duration(u.window_ms),
        "usage": usage_json(u),
    })
}

/// A `PodMetrics` object; timestamp and window are the newest container's.
pub fn pod_metrics(
    ns: &str,
    name: &str,
    labels: Option<&Value>,
    containers: &[(String, Usage)],
    now: &str,
) -> Value {
    let newest = containers
        .iter()
        .map(|(_, u)| u)
        .max_by_key(|u| u.timestamp_ms);
    let cs: Vec<Value> = containers
        .iter()
        .map(|(n, u)| json!({ "name": n, "usage": usage_json(u) }))
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta(name, Some(ns), labels, now),
        "timestamp": newest.map(|u| rfc3339_ms(u.timestamp_ms)).unwrap_or_else(|| now.to_string()),
        "window": go_duration(newest.map(|u| u.window_ms).unwrap_or(0)),
        "containers": cs,
    })
}

fn sum_quantities<'a>(qs: impl Iterator<Item = &'a Value>) -> String {
    let mut total: Option<crate::api::quantity::Quantity> = None;
    for q in qs
        .filter_map(Value::as_str)
        .filter_map(crate::api::quantity::parse_quantity)
    {
        total = Some(match total {
            None => q,
            Some(t) => t.checked_add(&q).unwrap_or(t),
        });
    }
    total.map(|t| t.canonical()).unwrap_or_else(|| "0".into())
}

/// NodeMetrics/PodMetrics objects as a `meta.k8s.io/v1` Table (Name, CPU,
/// Memory, Window; a pod's usage is the sum of its containers), the row
/// objects as `PartialObjectMetadata` unless `full_objects`.
pub fn table(items: &[Value], full_objects: bool, with_objects: bool) -> Value {
    let col = |name: &str, format: &str, desc: &str| json!({ "name": name, "type": "string", "format": format, "description": desc, "priority": 0 });
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let (cpu, mem) = match o.get("containers").and_then(Value::as_array) {
                Some(cs) => (
                    sum_quantities(cs.iter().filter_map(|c| c.pointer("/usage/cpu"))),
                    sum_quantities(cs.iter().filter_map(|c| c.pointer("/usage/memory"))),
                ),
                None => (
                    sum_quantities(o.pointer("/usage/cpu").into_iter()),
                    sum_quantities(o.pointer("/usage/memory").into_iter()),
                ),
            };
            let mut row = json!({ "cells": [o["metadata"]["name"], cpu, mem, o["window"]] });
            if with_objects {
                row["object"] = if full_objects {
                    o.clone()
                } else {
                    json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    })
                };
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            col("Name", "name", "Name of the resource"),
            col("CPU", "", "CPU usage"),
            col("Memory", "", "Memory usage"),
            col("Window", "", "Interval over which the usage was measured"),
        ],
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="main",namespace="default",pod="web"} 2.5 1000000
container_cpu_usage_seconds_total{container="side",namespace="default",pod="web"} 1 1000000
container_memory_working_set_bytes{container="main",namespace="default",pod="web"} 4096 1000000
container_memory_working_set_bytes{container="side",namespace="default",pod="web"} 1000 1000000
container_start_time_seconds{container="main",namespace="default",pod="web"} 1.7e+09 1000000
container_cpu_usage_seconds_total{container="x",namespace="odd",pod="a\"b,c=d"} 1 1000000
container_memory_working_set_bytes{container="x",namespace="odd",pod="a\"b,c=d"} 1 1000000
node_cpu_usage_seconds_total 100 1000500
node_memory_working_set_bytes 1.048576e+06 1000500
scrape_error 0
garbage line here
"#;

    #[test]
    fn parses_prometheus_text() {
        let s = parse_prometheus(TEXT);
        assert_eq!(s.len(), 10);
        assert_eq!(s[0].name, "container_cpu_usage_seconds_total");
        assert_eq!(s[0].labels["pod"], "web");
        assert_eq!(s[0].value, 2.5);
        assert_eq!(s[0].timestamp_ms, Some(1_000_000));
        assert_eq!(s[5].labels["pod"], "a\"b,c=d");
        assert_eq!(s[9].timestamp_ms, None);
        assert!(parse_prometheus("x{a=\"unterminated} 1").is_empty());
        assert!(parse_prometheus("x 1 notanumber").is_empty());
    }

    #[test]
    fn scrape_from_samples() {
        let s = Scrape::from_samples(&parse_prometheus(TEXT), 0);
        let node = s.node.unwrap();
        assert_eq!(node.cpu_ns, Some(100_000_000_000));
        assert_eq!(node.memory_bytes, Some(1_048_576));
        assert_eq!(node.timestamp_ms, 1_000_500);
        let web = &s.containers[&("default".to_string(), "web".to_string())];
        assert_eq!(web["main"].cpu_ns, Some(2_500_000_000));
        assert_eq!(web["main"].start_s, Some(1.7e9));
        assert_eq!(web["side"].memory_bytes, Some(1000));
    }

    fn p(ts: i64, cpu: u64, mem: u64, start: f64) -> Point {
        Point {
            timestamp_ms: ts,
            cpu_ns: Some(cpu),
            memory_bytes: Some(mem),
            start_s: Some(start),
        }
    }

    #[test]
    fn usage_cases() {
        let base = p(10_000, 1_000_000_000, 10, 1.0);
        // (next point, expected nanocores)
        let cases: &[(Point, Option<u64>)] = &[
            (p(25_000, 16_000_000_000, 20, 1.0), Some(1_000_000_000)),
            (p(20_000, 1_500_000_000, 20, 1.0), Some(50_000_000)),
            (p(10_000, 2_000_000_000, 20, 1.0), None), // same timestamp
            (p(9_000, 2_000_000_000, 20, 1.0), None),  // older
            (p(20_000, 500, 20, 1.0), None),           // counter reset
            (p(20_000, 2_000_000_000, 20, 2.0), None), // restarted container
        ];
        for (i, (next, want)) in cases.iter().enumerate() {
            assert_eq!(
                usage(&base, next).map(|u| u.cpu_nanocores),
                *want,
                "case {i}"
            );
        }
        let u = usage(&base, &cases[0].0).unwrap();
        assert_eq!(
            (u.window_ms, u.memory_bytes, u.timestamp_ms),
            (15_000, 20, 25_000)
        );
    }

    #[test]
    fn window_needs_two_scrapes_and_complete_pods() {
        let mut w = NodeWindow::default();
        let s1 = Scrape::from_samples(&parse_prometheus(TEXT), 0);
        assert!(w.update(&s1), "first scrape is pending");
        assert!(w.node_usage().is_none());
        assert!(w.pod_usage("default", "web").is_none());
        let text2 = TEXT
            .replace(" 1000000\n", " 1015000\n")
            .replace(" 1000500\n", " 1015500\n")
            .replace(
                "main\",namespace=\"default\",pod=\"web\"} 2.5",
                "main\",namespace=\"default\",pod=\"web\"} 4",
            )
            .replace(
                "node_cpu_usage_seconds_total 100",
                "node_cpu_usage_seconds_total 115",
            );
        let s2 = Scrape::from_samples(&parse_prometheus(&text2), 0);
        assert!(!w.update(&s2));
        let n = w.node_usage().unwrap();
        assert_eq!((n.cpu_nanocores, n.window_ms), (1_000_000_000, 15_000));
        let web = w.pod_usage("default", "web").unwrap();
        assert_eq!(web[0].0, "main");
        assert_eq!(web[0].1.cpu_nanocores, 100_000_000);
        assert_eq!(web[1].1.cpu_nanocores, 0);
        // a new container in the pod: the pod is incomplete again
        let text3 = text2.replace(" 1015000\n", " 1030000\n")
            + "container_cpu_usage_seconds_total{container=\"new\",namespace=\"default\",pod=\"web\"} 1 1030000\n"
            + "container_memory_working_set_bytes{container=\"new\",namespace=\"default\",pod=\"web\"} 1 1030000\n";
        assert!(w.update(&Scrape::from_samples(&parse_prometheus(&text3), 0)));
        assert!(w.pod_usage("default", "web").is_none());
        // an unchanged sample keeps the previous usage
        assert!(w.node_usage().is_some());
        // a pod gone from the scrape is gone
        w.update(&Scrape::default());
        assert!(w.pod_usage("default", "web").is_none());
        assert!(w.node_usage().is_none());
    }

    #[test]
    fn quantities() {
        let cpu = [
            (0, "0"),
            (1, "1n"),
            (123_456_789, "123456789n"),
            (5_000_000, "5m"),
            (250_000, "250u"),
            (1_000_000_000, "1"),
            (1_500_000_000, "1500m"),
        ];
        for (n, want) in cpu {
            assert_eq!(cpu_quantity(n), want, "{n}");
        }
        let mem = [
            (0, "0"),
            (500, "500"),
            (1000, "1k"),
            (1024, "1Ki"),
            (1500, "1500"),
            (4096 * 3, "12Ki"),
            (1_048_576, "1Mi"),
            (1_048_576 + 4096, "1028Ki"),
        ];
        for (b, want) in mem {
            assert_eq!(memory_quantity(b), want, "{b}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            (0, "0s"),
            (500, "500ms"),
            (1000, "1s"),
            (15_000, "15s"),
            (14_985, "14.985s"),
            (15_100, "15.1s"),
            (65_500, "1m5.5s"),
            (60_000, "1m0s"),
            (3_600_000, "1h0m0s"),
            (-2000, "-2s"),
        ];
        for (ms, want) in cases {
            assert_eq!(go_duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn object_shapes() {
        let u = Usage {
            timestamp_ms: 1_700_000_000_500,
            window_ms: 15_000,
            cpu_nanocores: 5_000_000,
            memory_bytes: 8192,
        };
        let labels = json!({"app": "web"});
        let n = node_metrics("n1", Some(&labels), &u, "2024-01-01T00:00:00Z");
        assert_eq!(n["kind"], "NodeMetrics");
        assert_eq!(n["metadata"]["labels"]["app"], "web");
        assert_eq!(n["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(n["window"], "15s");
        assert_eq!(n["usage"], json!({"cpu": "5m", "memory": "8Ki"}));
        let p = pod_metrics("ns", "p", None, &[("c".into(), u)], "now");
        assert_eq!(
            p["metadata"],
            json!({"name": "p", "namespace": "ns", "creationTimestamp": "now"})
        );
        assert_eq!(p["containers"][0]["name"], "c");
        assert_eq!(p["containers"][0]["usage"]["cpu"], "5m");
        let two = pod_metrics("ns", "p", None, &[("a".into(), u), ("b".into(), u)], "now");
        let t = table(&[two, n], false, true);
        assert_eq!(t["columnDefinitions"][3]["name"], "Window");
        assert_eq!(t["rows"][0]["cells"], json!(["p", "10m", "16Ki", "15s"]));
        assert_eq!(t["rows"][1]["cells"], json!(["n1", "5m", "8Ki", "15s"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert!(
            table(&[], false, false)["rows"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
}
