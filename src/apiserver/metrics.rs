//! `/metrics` in Prometheus text format: request counts and latency
//! histograms by verb/resource/code, watch count, store revision.
//!
//! Invariant: recording is cheap (one short mutex section per request) and
//! never fails a request.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    total: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String, String), Histogram>>,
    pub watchers: AtomicI64,
}

impl Metrics {
    pub fn record(&self, verb: &str, group: &str, resource: &str, code: u16, took: Duration) {
        {
            let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            *r.entry((
                verb.to_string(),
                group.to_string(),
                resource.to_string(),
                code,
            ))
            .or_default() += 1;
        }
        if verb == "WATCH" {
            return;
        }
        let secs = took.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l
            .entry((verb.to_string(), group.to_string(), resource.to_string()))
            .or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.total += 1;
    }

    pub fn render(&self, revision: i64, compact_revision: i64) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        for ((verb, group, resource, code), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push_str(&format!("apiserver_request_total{{code=\"{code}\",group=\"{group}\",resource=\"{resource}\",verb=\"{verb}\"}} {n}\n"));
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, group, resource), h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let labels = format!("group=\"{group}\",resource=\"{resource}\",verb=\"{verb}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}\n",
                    h.counts[i]
                ));
            }
            out.push_str(&format!(
                "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n",
                h.total
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_sum{{{labels}}} {}\n",
                h.sum
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_count{{{labels}}} {}\n",
                h.total
            ));
        }
        out.push_str(&format!(
            "# HELP apiserver_registered_watchers Number of currently open watches.\n# TYPE apiserver_registered_watchers gauge\napiserver_registered_watchers {}\n",
            self.watchers.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP skiff_store_revision Current store revision.\n# TYPE skiff_store_revision gauge\nskiff_store_revision {revision}\n# HELP skiff_store_compact_revision Store compaction revision.\n# TYPE skiff_store_compact_revision gauge\nskiff_store_compact_revision {compact_revision}\n"
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts() {
        let m = Metrics::default();
        m.record("GET", "", "pods", 200, Duration::from_millis(3));
        let s = m.render(5, 1);
        assert!(s.contains(
            "apiserver_request_total{code=\"200\",group=\"\",resource=\"pods\",verb=\"GET\"} 1"
        ));
        assert!(s.contains("le=\"0.005\"} 1"));
        assert!(s.contains("skiff_store_revision 5"));
    }
}
