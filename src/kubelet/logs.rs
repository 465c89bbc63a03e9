//! Container logs as `kubectl logs` shows them: a pure parser of the CRI log
//! format (`<RFC3339Nano> <stdout|stderr> <P|F> <message>`) plus a small file
//! follower.
//!
//! Invariants: partial (`P`) records are joined with the following records of
//! the same stream up to the closing `F` record, and the joined line carries
//! the timestamp of its first part; stdout and stderr stay in file order;
//! `tailLines` counts joined lines after the `since` filter; `limitBytes`
//! counts output bytes (timestamps included) and may cut a line. A malformed
//! record is skipped, never an error. The follower polls (no inotify) and
//! ends when the container is no longer running and the file is drained, or
//! when the receiver goes away.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// What the caller asked for (`/containerLogs` query parameters).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogError {
    #[error("{0}")]
    BadQuery(String),
}

fn parse_bool(k: &str, v: &str) -> Result<bool, LogError> {
    match v {
        "" | "true" | "1" | "True" | "TRUE" => Ok(true),
        "false" | "0" | "False" | "FALSE" => Ok(false),
        _ => Err(LogError::BadQuery(format!(
            "invalid boolean value {v:?} for {k}"
        ))),
    }
}

fn parse_int(k: &str, v: &str) -> Result<i64, LogError> {
    v.parse::<i64>()
        .map_err(|_| LogError::BadQuery(format!("invalid integer value {v:?} for {k}")))
}

impl LogOptions {
    /// Parse a query string; `now` resolves `sinceSeconds`.
    pub fn from_query(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<Self, LogError> {
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (k, v) in pairs {
            match k.as_str() {
                "follow" => o.follow = parse_bool(k, v)?,
                "previous" => o.previous = parse_bool(k, v)?,
                "timestamps" => o.timestamps = parse_bool(k, v)?,
                "tailLines" => {
                    let n = parse_int(k, v)?;
                    if n < 0 {
                        return Err(LogError::BadQuery("tailLines must be >= 0".into()));
                    }
                    o.tail_lines = Some(usize::try_from(n).unwrap_or(usize::MAX));
                }
                "limitBytes" => {
                    let n = parse_int(k, v)?;
                    if n < 1 {
                        return Err(LogError::BadQuery("limitBytes must be > 0".into()));
                    }
                    o.limit_bytes = Some(n.unsigned_abs());
                }
                "sinceSeconds" => {
                    let n = parse_int(k, v)?;
                    if n < 1 {
                        return Err(LogError::BadQuery("sinceSeconds must be > 0".into()));
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    let t = DateTime::parse_from_rfc3339(v).map_err(|_| {
                        LogError::BadQuery(format!("invalid RFC3339 time {v:?} for sinceTime"))
                    })?;
                    since_time = Some(t.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        o.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err(LogError::BadQuery(
                    "at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
                ));
            }
            (Some(s), None) => now.checked_sub_signed(chrono::Duration::seconds(s)),
            (None, t) => t,
        };
        Ok(o)
    }
}

/// One record of a CRI log file.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<'a> {
    pub time: DateTime<Utc>,
    pub stderr: bool,
    pub partial: bool,
    pub msg: &'a [u8],
}

/// Parse one record (without its trailing newline); `None` if malformed.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    let stderr = match parts.next()? {
        b"stdout" => false,
        b"stderr" => true,
        _ => return None,
    };
    let tag = parts.next()?;
    // the tag may carry more flags after ':' in later CRI versions
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    let msg = parts.next().unwrap_or(b"");
    Some(Record {
        time,
        stderr,
        partial,
        msg,
    })
}

/// A joined log line: complete message plus its newline.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub time: DateTime<Utc>,
    pub bytes: Vec<u8>,
}

/// Joins partial records per stream; feed records in file order.
#[derive(Default, Debug)]
pub struct Joiner {
    pending: [Option<Line>; 2],
}

impl Joiner {
    pub fn push(&mut self, r: &Record<'_>) -> Option<Line> {
        let slot = &mut self.pending[usize::from(r.stderr)];
        let line = slot.get_or_insert_with(|| Line {
            time: r.time,
            bytes: Vec::new(),
        });
        line.bytes.extend_from_slice(r.msg);
        if r.partial {
            return None;
        }
        let mut done = slot.take()?;
        done.bytes.push(b'\n');
        Some(done)
    }
}

/// Go's RFC3339Nano in UTC: nanoseconds without trailing zeros.
pub fn format_time(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// Renders lines for the client: `since` filter, timestamps, byte limit.
#[derive(Debug)]
pub struct Renderer {
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    remaining: Option<u64>,
}

impl Renderer {
    pub fn new(o: &LogOptions) -> Self {
        Renderer {
            since: o.since,
            timestamps: o.timestamps,
            remaining: o.limit_bytes,
        }
    }

    pub fn wants(&self, line: &Line) -> bool {
        self.since.is_none_or(|s| line.time >= s)
    }

    /// True once the byte limit is used up.
    pub fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Append the rendering of `line` (if wanted) to `out`.
    pub fn render(&mut self, line: &Line, out: &mut Vec<u8>) {
        if !self.wants(line) || self.exhausted() {
            return;
        }
        let mut buf = Vec::with_capacity(line.bytes.len() + 32);
        if self.timestamps {
            buf.extend_from_slice(format_time(&line.time).as_bytes());
            buf.push(b' ');
        }
        buf.extend_from_slice(&line.bytes);
        if let Some(rem) = self.remaining.as_mut() {
            let take = usize::try_from(*rem).unwrap_or(usize::MAX).min(buf.len());
            buf.truncate(take);
            *rem -= take as u64;
        }
        out.extend_from_slice(&buf);
    }
}

/// Parse a whole chunk of complete records into joined lines.
pub fn lines_of(data: &[u8], joiner: &mut Joiner) -> Vec<Line> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_record)
        .filter_map(|r| joiner.push(&r))
        .collect()
}

/// What `kubectl logs` prints for a finished read of `data` (no follow).
pub fn render_all(data: &[u8], o: &LogOptions) -> (Vec<u8>, Joiner) {
    let mut joiner = Joiner::default();
    let complete = match data.iter().rposition(|b| *b == b'\n') {
        Some(i) => &data[..=i],
        None => &[][..],
    };
    let mut r = Renderer::new(o);
    let lines: Vec<Line> = lines_of(complete, &mut joiner)
        .into_iter()
        .filter(|l| r.wants(l))
        .collect();
    let skip = match o.tail_lines {
        Some(n) => lines.len().saturating_sub(n),
        None => 0,
    };
    let mut out = Vec::new();
    for l in &lines[skip..] {
        r.render(l, &mut out);
    }
    (out, joiner)
}

/// Stream the log file at `path` into `tx`. With `o.follow`, keeps reading
/// new records until `running()` reports false and the file is drained.
pub async fn stream_file<F, Fut>(
    path: &Path,
    o: &LogOptions,
    tx: mpsc::Sender<Vec<u8>>,
    mut running: F,
) -> std::io::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut file = tokio::fs::File::open(path).await?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).await?;
    let mut renderer = Renderer::new(o);
    // the first pass handles tailLines; later data is rendered as it comes
    let complete_len = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (first, mut joiner) = render_all(&data, o);
    if let Some(limit) = o.limit_bytes {
        let used = (first.len() as u64).min(limit);
        renderer.remaining = Some(limit - used);
    }
    if !first.is_empty() && tx.send(first).await.is_err() {
        return Ok(());
    }
    if !o.follow || renderer.exhausted() {
        return Ok(());
    }
    let mut carry: Vec<u8> = data.split_off(complete_len);
    let mut pos = file.stream_position().await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle_checks = 0u32;
    loop {
        let n = file.read(&mut buf).await?;
        if n > 0 {
            pos += n as u64;
            carry.extend_from_slice(&buf[..n]);
            if let Some(i) = carry.iter().rposition(|b| *b == b'\n') {
                let rest = carry.split_off(i + 1);
                let mut out = Vec::new();
                for l in lines_of(&carry, &mut joiner) {
                    renderer.render(&l, &mut out);
                }
                carry = rest;
                if !out.is_empty() && tx.send(out).await.is_err() {
                    return Ok(());
                }
                if renderer.exhausted() {
                    return Ok(());
                }
            }
            continue;
        }
        // at end of file: is the writer still there?
        idle_checks += 1;
        if idle_checks.is_multiple_of(5) && !running().await {
            // one last read after seeing it stopped: the runtime may have
            // flushed between our read and the check
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            pos += n as u64;
            carry.extend_from_slice(&buf[..n]);
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tx.closed() => return Ok(()),
        }
        // a truncated or replaced file: start over from its beginning
        if let Ok(meta) = tokio::fs::metadata(path).await
            && meta.len() < pos
        {
            file = tokio::fs::File::open(path).await?;
            pos = 0;
            carry.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const FILE: &[u8] = b"2024-01-01T00:00:01.5Z stdout F one\n\
2024-01-01T00:00:02Z stderr P tw\n\
2024-01-01T00:00:02.1Z stdout F three\n\
2024-01-01T00:00:03Z stderr F o\n\
garbage line\n\
2024-01-01T00:00:04.000000100+00:00 stdout F four\n\
2024-01-01T00:00:05Z stdout F incomplete";

    #[test]
    fn records() {
        let r = parse_record(b"2024-01-01T00:00:01.123456789Z stderr P hello world").unwrap();
        assert!(r.stderr && r.partial);
        assert_eq!(r.msg, b"hello world");
        assert_eq!(
            parse_record(b"2024-01-01T00:00:01Z stdout F").unwrap().msg,
            b""
        );
        assert!(parse_record(b"nope stdout F x").is_none());
        assert!(parse_record(b"2024-01-01T00:00:01Z stdin F x").is_none());
    }

    #[test]
    fn render_cases() {
        let base = LogOptions::default();
        let cases: Vec<(LogOptions, &str)> = vec![
            (base.clone(), "one\nthree\ntwo\nfour\n"),
            (
                LogOptions {
                    tail_lines: Some(2),
                    ..base.clone()
                },
                "two\nfour\n",
            ),
            (
                LogOptions {
                    tail_lines: Some(0),
                    ..base.clone()
                },
                "",
            ),
            (
                LogOptions {
                    since: Some(t("2024-01-01T00:00:02Z")),
                    ..base.clone()
                },
                "three\ntwo\nfour\n",
            ),
            (
                LogOptions {
                    limit_bytes: Some(6),
                    ..base.clone()
                },
                "one\nth",
            ),
            (
                LogOptions {
                    timestamps: true,
                    tail_lines: Some(2),
                    ..base.clone()
                },
                "2024-01-01T00:00:02Z two\n2024-01-01T00:00:04.0000001Z four\n",
            ),
        ];
        for (o, want) in cases {
            let (out, _) = render_all(FILE, &o);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{o:?}");
        }
    }

    #[test]
    fn query() {
        let now = t("2024-01-01T00:01:00Z");
        let q = |s: &str| -> Vec<(String, String)> { serde_urlencoded::from_str(s).unwrap() };
        let o = LogOptions::from_query(&q("follow=true&tailLines=5&sinceSeconds=30"), now).unwrap();
        assert!(o.follow);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.since, Some(t("2024-01-01T00:00:30Z")));
        assert!(LogOptions::from_query(&q("tailLines=-1"), now).is_err());
        assert!(LogOptions::from_query(&q("limitBytes=0"), now).is_err());
        assert!(
            LogOptions::from_query(&q("sinceSeconds=1&sinceTime=2024-01-01T00:00:00Z"), now)
                .is_err()
        );
        let o =
            LogOptions::from_query(&q("sinceTime=2024-01-01T00:00:00Z&previous=1"), now).unwrap();
        assert!(o.previous);
        assert_eq!(o.since, Some(t("2024-01-01T00:00:00Z")));
    }

    #[tokio::test]
    async fn follow_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            b"2024-01-01T00:00:01Z stdout F a\n2024-01-01T00:00:01Z stdout P b",
        )
        .unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let p2 = path.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let task = tokio::spawn(async move {
            let o = LogOptions {
                follow: true,
                ..Default::default()
            };
            stream_file(&p2, &o, tx, || {
                let s = stop2.clone();
                async move { !s.load(std::sync::atomic::Ordering::SeqCst) }
            })
            .await
        });
        assert_eq!(rx.recv().await.unwrap(), b"a\n");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"\n2024-01-01T00:00:02Z stdout F c\n").unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"bc\n");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        task.await.unwrap().unwrap();
        assert!(rx.recv().await.is_none());
    }
}
