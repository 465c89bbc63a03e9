//! Pure planning for the **CronJob** controller (upstream
//! `pkg/controller/cronjob`, `cronjob_controllerv2.go`, batch/v1): cron
//! schedule parsing and next-run computation (robfig/cron v3 `ParseStandard`
//! semantics, time zones through `chrono-tz`), and one sync of a CronJob given
//! the Jobs it owns and `now`.
//!
//! Owns: the schedule grammar as a time computation (5 fields, ranges,
//! steps, lists, JAN–DEC / SUN–SAT names, `@yearly`… descriptors, `@every`,
//! `TZ=`/`CRON_TZ=` prefixes), day-of-month/day-of-week OR semantics, DST
//! handling identical to robfig (a time in a spring-forward gap is skipped
//! that day, a time in the repeated fall-back hour fires twice), the
//! missed-schedule arithmetic (`mostRecentScheduleTime`), concurrency policy,
//! startingDeadlineSeconds, history cleanup, `status.active` /
//! `lastScheduleTime` / `lastSuccessfulTime`, events and the requeue delay.
//!
//! Invariants: the Job for a scheduled time is always named
//! `<cronjob>-<minutes since epoch>`, so a time is never run twice; a time is
//! only recorded in `lastScheduleTime` together with its Job in `active`.
//!
//! Must not: do I/O or read clocks; validate syntax for the API (that is
//! `api::validation::cron`, whose grammar this parser accepts).

use crate::controllers::job::plan::{Event, finished_condition};
use crate::controllers::podutil;
use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, NaiveDateTime, Offset};
use chrono::{TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::time::Duration;

/// Annotation with the scheduled time (RFC 3339, in `spec.timeZone` or UTC).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Slack added to the requeue delay (upstream `nextScheduleDelta`).
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// API defaults of the history limits (applied when the field is unset).
pub const DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT: i32 = 3;
pub const DEFAULT_FAILED_JOBS_HISTORY_LIMIT: i32 = 1;

const STAR_BIT: u64 = 1 << 63;

// ---------------------------------------------------------------------------
// Schedule

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    kind: Kind,
    /// Zone from a `TZ=`/`CRON_TZ=` prefix; None means "the caller's zone".
    location: Option<Tz>,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Spec(Spec),
    /// `@every`: a constant delay in whole seconds (at least one).
    Every(ChronoDuration),
}

/// Bit sets per field (bit n = value n), [`STAR_BIT`] when written `*`/`?`.
#[derive(Clone, Debug, PartialEq)]
struct Spec {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step.max(1) as usize)
        .fold(0, |acc, i| acc | (1u64 << i))
}

fn all(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR_BIT
}

/// Parses a schedule like robfig/cron v3 `ParseStandard`; errors carry
/// robfig's texts.
pub fn parse_schedule(spec: &str) -> Result<Schedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut rest = spec;
    let mut location = None;
    if rest.starts_with("TZ=") || rest.starts_with("CRON_TZ=") {
        let i = rest.find(' ').unwrap_or(rest.len());
        let name = &rest[rest.find('=').map_or(0, |e| e + 1)..i];
        location =
            Some(load_location(name).map_err(|e| format!("provided bad location {name}: {e}"))?);
        rest = rest[i..].trim();
    }
    let kind = if rest.starts_with('@') {
        parse_descriptor(rest)?
    } else {
        Kind::Spec(parse_fields(rest)?)
    };
    Ok(Schedule { kind, location })
}

/// Go's `time.LoadLocation` for the names the controller accepts.
fn load_location(name: &str) -> Result<Tz, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name}"))
}

fn parse_fields(spec: &str) -> Result<Spec, String> {
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Spec {
        second: 1,
        minute: get_field(fields[0], &MINUTES)?,
        hour: get_field(fields[1], &HOURS)?,
        dom: get_field(fields[2], &DOM)?,
        month: get_field(fields[3], &MONTHS)?,
        dow: get_field(fields[4], &DOW)?,
    })
}

fn parse_descriptor(d: &str) -> Result<Kind, String> {
    let at = |minute: u64, hour: u64, dom: u64, month: u64, dow: u64| {
        Kind::Spec(Spec {
            second: 1,
            minute,
            hour,
            dom,
            month,
            dow,
        })
    };
    let kind = match d {
        "@yearly" | "@annually" => at(1, 1, 1 << 1, 1 << 1, all(&DOW)),
        "@monthly" => at(1, 1, 1 << 1, all(&MONTHS), all(&DOW)),
        "@weekly" => at(1, 1, all(&DOM), all(&MONTHS), 1),
        "@daily" | "@midnight" => at(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => at(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => match d.strip_prefix("@every ") {
            Some(dur) => {
                let nanos = parse_go_duration(dur).ok_or_else(|| {
                    format!("failed to parse duration {d}: time: invalid duration \"{dur}\"")
                })?;
                let secs = (nanos / 1_000_000_000).max(1);
                Kind::Every(ChronoDuration::seconds(secs as i64))
            }
            None => return Err(format!("unrecognized descriptor: {d}")),
        },
    };
    Ok(kind)
}

/// Go `time.ParseDuration` in nanoseconds (negative durations become 0).
fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(n);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let units: [(&str, i128); 8] = [
            ("ns", 1),
            ("us", 1_000),
            ("µs", 1_000),
            ("μs", 1_000),
            ("ms", 1_000_000),
            ("s", 1_000_000_000),
            ("m", 60_000_000_000),
            ("h", 3_600_000_000_000),
        ];
        let (unit, scale) = units
            .iter()
            .filter(|(u, _)| tail.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        let int_v: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut v = int_v.checked_mul(*scale)?;
        if !frac.is_empty() {
            let digits = frac.len().min(18) as u32;
            let f: i128 = frac[..digits as usize].parse().ok()?;
            v += f * scale / 10i128.pow(digits);
        }
        total = total.checked_add(v)?;
        rest = &tail[unit.len()..];
    }
    Some(if neg { 0 } else { total })
}

fn get_field(field: &str, b: &Bounds) -> Result<u64, String> {
    let mut out = 0;
    for expr in field.split(',').filter(|x| !x.is_empty()) {
        out |= get_range(expr, b)?;
    }
    Ok(out)
}

fn get_range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (start, end, extra) = (b.min, b.max, STAR_BIT);
    } else {
        start = parse_int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_int(expr)
}

fn parse_int(expr: &str) -> Result<u32, String> {
    let n: i64 = expr.parse().map_err(|_| {
        format!("failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": invalid syntax")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    // Out-of-range values are reported by the range checks.
    Ok(u32::try_from(n).unwrap_or(u32::MAX).min(1000))
}

impl Schedule {
    /// The zone of a `TZ=`/`CRON_TZ=` prefix, if any.
    pub fn location(&self) -> Option<Tz> {
        self.location
    }

    /// The first activation strictly after `after` (robfig `Next`), using the
    /// schedule's own zone or else `tz`. None when there is none within five
    /// years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let nanos = ChronoDuration::nanoseconds(i64::from(after.timestamp_subsec_nanos()));
        match &self.kind {
            Kind::Every(d) => Some(after + *d - nanos),
            Kind::Spec(s) => next_spec(s, after, self.location.unwrap_or(tz)),
        }
    }
}

fn has(set: u64, v: u32) -> bool {
    set & (1u64 << v) != 0
}

fn day_matches(s: &Spec, t: &DateTime<Tz>) -> bool {
    let dom = has(s.dom, t.day());
    let dow = has(s.dow, t.weekday().num_days_from_sunday());
    if s.dom & STAR_BIT != 0 || s.dow & STAR_BIT != 0 {
        dom && dow
    } else {
        dom || dow
    }
}

/// Go `time.Date` in `loc`, normalising overflowing months/days; a wall time
/// in a gap or overlap takes the offset in force before the transition.
fn go_date(loc: Tz, year: i32, month: i32, day: i32, hour: u32, min: u32) -> Option<DateTime<Tz>> {
    let y = year + (month - 1).div_euclid(12);
    let m = (month - 1).rem_euclid(12) as u32 + 1;
    let date = NaiveDate::from_ymd_opt(y, m, 1)?
        .checked_add_signed(ChronoDuration::days(i64::from(day) - 1))?;
    local_to_instant(loc, date.and_hms_opt(hour, min, 0)?)
}

fn local_to_instant(loc: Tz, naive: NaiveDateTime) -> Option<DateTime<Tz>> {
    if let Some(t) = loc.from_local_datetime(&naive).earliest() {
        return Some(t);
    }
    // In a gap: use the offset of the wall time just before it.
    for h in 1..=24 {
        let probe = naive - ChronoDuration::hours(h);
        if let Some(t) = loc.from_local_datetime(&probe).earliest() {
            let off = i64::from(t.offset().fix().local_minus_utc());
            let utc = naive - ChronoDuration::seconds(off);
            return Some(loc.from_utc_datetime(&utc));
        }
    }
    None
}

fn add_days(t: &DateTime<Tz>, days: i32) -> Option<DateTime<Tz>> {
    go_date(
        t.timezone(),
        t.year(),
        t.month() as i32,
        t.day() as i32 + days,
        t.hour(),
        t.minute(),
    )
}

fn add_month(t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    go_date(
        t.timezone(),
        t.year(),
        t.month() as i32 + 1,
        t.day() as i32,
        t.hour(),
        t.minute(),
    )
}

fn truncate(t: DateTime<Tz>, unit: i64) -> DateTime<Tz> {
    let secs = t.timestamp();
    let nanos = ChronoDuration::nanoseconds(i64::from(t.timestamp_subsec_nanos()));
    t - ChronoDuration::seconds(secs.rem_euclid(unit)) - nanos
}

/// robfig/cron v3 `SpecSchedule.Next`, step by step (absolute-time hour and
/// minute steps, wall-clock day and month steps).
fn next_spec(s: &Spec, after: DateTime<Utc>, loc: Tz) -> Option<DateTime<Utc>> {
    let mut t = after.with_timezone(&loc);
    t = t + ChronoDuration::seconds(1) - ChronoDuration::nanoseconds(i64::from(t.nanosecond()));
    let mut added = false;
    let year_limit = t.year() + 5;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !has(s.month, t.month()) {
            if !added {
                added = true;
                t = go_date(loc, t.year(), t.month() as i32, 1, 0, 0)?;
            }
            t = add_month(&t)?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(s, &t) {
            if !added {
                added = true;
                t = go_date(loc, t.year(), t.month() as i32, t.day() as i32, 0, 0)?;
            }
            t = add_days(&t, 1)?;
            // Back to midnight when DST moved the wall clock.
            let h = i64::from(t.hour());
            if h != 0 {
                t = if h > 12 {
                    t + ChronoDuration::hours(24 - h)
                } else {
                    t - ChronoDuration::hours(h)
                };
            }
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !has(s.hour, t.hour()) {
            if !added {
                added = true;
                t = go_date(loc, t.year(), t.month() as i32, t.day() as i32, t.hour(), 0)?;
            }
            t += ChronoDuration::hours(1);
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(s.minute, t.minute()) {
            if !added {
                added = true;
                t = truncate(t, 60);
            }
            t += ChronoDuration::minutes(1);
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        while !has(s.second, t.second()) {
            if !added {
                added = true;
                t = truncate(t, 1);
            }
            t += ChronoDuration::seconds(1);
            if t.second() == 0 {
                continue 'wrap;
            }
        }
        return Some(t.with_timezone(&Utc));
    }
}

// ---------------------------------------------------------------------------
// Missed schedules

/// How many schedules were missed since the earliest time considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100.
    Many,
}

/// Upstream `mostRecentScheduleTime`.
#[derive(Clone, Debug, PartialEq)]
pub struct Recent {
    /// Last schedule time, or creation time, possibly moved up to the
    /// starting deadline.
    pub earliest: DateTime<Utc>,
    /// The latest activation in (earliest, now], if any.
    pub most_recent: Option<DateTime<Utc>>,
    pub missed: Missed,
    /// Set for schedules that never fire (two activations less than a
    /// second apart or none at all).
    pub error: Option<String>,
}

/// Computes the most recent unmet activation of `cj` at `now`.
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: DateTime<Utc>,
    sched: &Schedule,
    tz: Tz,
    include_starting_deadline: bool,
) -> Recent {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(podutil::time_to_chrono)
        .unwrap_or(now);
    let deadline = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds);
    if let (true, Some(d)) = (include_starting_deadline, deadline) {
        earliest = earliest.max(now - ChronoDuration::seconds(d));
    }
    let mut r = Recent {
        earliest,
        most_recent: None,
        missed: Missed::None,
        error: None,
    };
    let t1 = sched.next(earliest, tz);
    if t1.is_some_and(|t1| now < t1) {
        return r;
    }
    let t2 = t1.and_then(|t1| sched.next(t1, tz));
    if let (Some(t1), Some(t2)) = (t1, t2)
        && now < t2
    {
        r.most_recent = Some(t1);
        return r;
    }
    let between = match (t1, t2) {
        (Some(t1), Some(t2)) => ((t2 - t1).num_milliseconds() + 500).div_euclid(1000),
        _ => 0,
    };
    let (Some(t1), true) = (t1, between >= 1) else {
        r.error = Some("time difference between two schedules is less than 1 second".into());
        return r;
    };
    let elapsed = (now - t1).num_seconds();
    let missed = elapsed / between + 1;
    let potential = t1 + ChronoDuration::seconds((missed - 2) * between);
    let mut t = sched.next(potential, tz);
    while let Some(x) = t.filter(|x| *x <= now) {
        r.most_recent = Some(x);
        t = sched.next(x, tz);
    }
    r.missed = if missed > 100 {
        Missed::Many
    } else {
        Missed::Few
    };
    r
}

/// Upstream `nextScheduleTimeDuration`: the delay until the next activation
/// after the last one handled, plus [`NEXT_SCHEDULE_DELTA`].
pub fn next_schedule_delay(
    cj: &CronJob,
    now: DateTime<Utc>,
    sched: &Schedule,
    tz: Tz,
) -> Option<Duration> {
    let r = most_recent_schedule_time(cj, now, sched, tz, false);
    let base = match (&r.error, r.most_recent, r.missed) {
        (Some(_), _, _) => now,
        (None, Some(t), _) => t,
        (None, None, Missed::None) => r.earliest,
        (None, None, _) => now,
    };
    let next = sched.next(base, tz)?;
    let delay = (next - now).to_std().unwrap_or_default();
    Some(delay + NEXT_SCHEDULE_DELTA)
}

// ---------------------------------------------------------------------------
// The sync

/// One API call (or event) for the shell, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum CronJobAction {
    /// DELETE the Job with `propagationPolicy: Background` (precondition uid;
    /// NotFound counts as success).
    DeleteJob { name: String, uid: String },
    /// POST this Job. On success call [`CronJobPlan::job_created`] with the
    /// answer and record [`created_job_event`]. On AlreadyExists GET the Job:
    /// if its controller reference is this CronJob, call `job_created` with it
    /// and go on (no event); otherwise stop. Other errors: record
    /// [`failed_create_job_event`] and stop.
    CreateJob(Box<Job>),
    /// PUT `/status` of the CronJob (with its resourceVersion).
    UpdateStatus(Box<CronJobStatus>),
    /// Record this event on the CronJob.
    Event(Event),
}

/// Result of one sync.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CronJobPlan {
    /// Apply in order; stop at the first failure and retry the sync later.
    pub actions: Vec<CronJobAction>,
    /// Sync again after this delay (the next activation).
    pub requeue_after: Option<Duration>,
}

impl CronJobPlan {
    /// Fills the uid/resourceVersion of the just-created Job into the
    /// `status.active` reference of the following [`CronJobAction::UpdateStatus`].
    pub fn job_created(&mut self, created: &Job) {
        let fresh = job_ref(created);
        for a in &mut self.actions {
            let CronJobAction::UpdateStatus(st) = a else {
                continue;
            };
            for r in st.active.iter_mut().flatten() {
                if r.name == fresh.name && r.uid.is_none() {
                    *r = fresh.clone();
                }
            }
        }
    }
}

/// Event recorded after a successful [`CronJobAction::CreateJob`].
pub fn created_job_event(job_name: &str) -> Event {
    normal("SuccessfulCreate", format!("Created job {job_name}"))
}

/// Event recorded when a [`CronJobAction::CreateJob`] failed.
pub fn failed_create_job_event(err: &str) -> Event {
    warning("FailedCreate", format!("Error creating job: {err}"))
}

fn normal(reason: &str, message: String) -> Event {
    Event {
        type_: "Normal".into(),
        reason: reason.into(),
        message,
    }
}

fn warning(reason: &str, message: String) -> Event {
    Event {
        type_: "Warning".into(),
        reason: reason.into(),
        message,
    }
}

/// The reference `status.active` keeps for a Job.
pub fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cj: &CronJob, scheduled: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or_default(),
        scheduled.timestamp().div_euclid(60)
    )
}

/// The Job the CronJob creates for `scheduled` (upstream `getJobFromTemplate2`).
pub fn job_from_template(cj: &CronJob, scheduled: DateTime<Utc>) -> Result<Job, String> {
    let spec = cj.spec.clone().unwrap_or_default();
    let tmpl_meta = spec.job_template.metadata.unwrap_or_default();
    let zone = load_location(spec.time_zone.as_deref().unwrap_or_default())?;
    let mut annotations = tmpl_meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        scheduled
            .with_timezone(&zone)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmpl_meta.labels,
            annotations: Some(annotations),
            creation_timestamp: Some(podutil::chrono_to_time(scheduled)),
            owner_references: Some(vec![podutil::owner_ref(
                "batch/v1",
                "CronJob",
                cj.metadata.name.as_deref().unwrap_or_default(),
                cj.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: spec.job_template.spec,
        status: None,
    })
}

fn finished_type(job: &Job) -> Option<&str> {
    finished_condition(job).map(|c| c.type_.as_str())
}

fn time_of(
    t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> Option<DateTime<Utc>> {
    t.map(podutil::time_to_chrono)
}

struct CronSync<'a> {
    cj: &'a CronJob,
    jobs: Vec<&'a Job>,
    now: DateTime<Utc>,
    default_tz: Tz,
    status: CronJobStatus,
    actions: Vec<CronJobAction>,
    requeue: Option<Duration>,
    /// Where the history cleanup's actions begin.
    cleanup_start: usize,
}

/// Plans one sync of `cj`.
///
/// - `jobs`: the Jobs whose controller reference is this CronJob (others are
///   ignored). Must be fresh enough to hold Jobs created by earlier plans.
/// - `default_tz`: the zone used when neither `spec.timeZone` nor a `TZ=`
///   prefix is given (upstream: the controller manager's local zone).
pub fn plan(cj: &CronJob, jobs: &[Job], now: DateTime<Utc>, default_tz: Tz) -> CronJobPlan {
    let uid = cj.metadata.uid.as_deref().unwrap_or_default();
    let owned = jobs
        .iter()
        .filter(|j| podutil::controller_ref(&j.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let mut s = CronSync {
        cj,
        jobs: owned,
        now,
        default_tz,
        status: cj.status.clone().unwrap_or_default(),
        actions: Vec::new(),
        requeue: None,
        cleanup_start: 0,
    };
    s.reconcile_children();
    s.schedule();
    s.cleanup_finished();
    s.assemble()
}

impl<'a> CronSync<'a> {
    fn event(&mut self, e: Event) {
        self.actions.push(CronJobAction::Event(e));
    }

    fn active(&mut self) -> &mut Vec<ObjectReference> {
        self.status.active.get_or_insert_with(Vec::new)
    }

    fn in_active(&self, uid: &str) -> bool {
        self.status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid.as_deref() == Some(uid))
    }

    fn remove_active(&mut self, uid: &str) {
        self.active().retain(|r| r.uid.as_deref() != Some(uid));
    }

    /// Active list and lastSuccessfulTime from the owned Jobs.
    fn reconcile_children(&mut self) {
        for j in self.jobs.clone() {
            let uid = j.metadata.uid.as_deref().unwrap_or_default();
            let name = j.metadata.name.clone().unwrap_or_default();
            let found = self.in_active(uid);
            match finished_type(j) {
                None if !found => self.event(warning(
                    "UnexpectedJob",
                    format!("Saw a job that the controller did not create or forgot: {name}"),
                )),
                Some(t) if found => {
                    self.remove_active(uid);
                    let msg = format!("Saw completed job: {name}, status: {t}");
                    self.event(normal("SawCompletedJob", msg));
                }
                _ => {}
            }
            if finished_type(j) == Some("Complete") {
                let done = time_of(j.status.as_ref().and_then(|s| s.completion_time.as_ref()));
                let last = time_of(self.status.last_successful_time.as_ref());
                if let Some(done) = done
                    && last.is_none_or(|l| done > l)
                {
                    self.status.last_successful_time = Some(podutil::chrono_to_time(done));
                }
            }
        }
        let known: Vec<String> = self
            .jobs
            .iter()
            .filter_map(|j| j.metadata.uid.clone())
            .collect();
        let missing: Vec<ObjectReference> = self
            .status
            .active
            .iter()
            .flatten()
            .filter(|r| !r.uid.as_ref().is_some_and(|u| known.contains(u)))
            .cloned()
            .collect();
        for r in missing {
            let name = r.name.clone().unwrap_or_default();
            self.event(normal(
                "MissingJob",
                format!("Active job went missing: {name}"),
            ));
            self.active().retain(|a| a != &r);
        }
    }

    /// The zone `spec.timeZone` names, or the default; Err when unknown.
    fn zone(&mut self) -> Result<Tz, ()> {
        let Some(name) = self.cj.spec.as_ref().and_then(|s| s.time_zone.clone()) else {
            return Ok(self.default_tz);
        };
        load_location(&name).map_err(|e| {
            self.event(warning(
                "UnknownTimeZone",
                format!("invalid timeZone: \"{name}\": {e}"),
            ));
        })
    }

    fn schedule(&mut self) {
        let spec = self.cj.spec.clone().unwrap_or_default();
        if self.cj.metadata.deletion_timestamp.is_some() {
            return;
        }
        let Ok(tz) = self.zone() else { return };
        if spec.suspend == Some(true) {
            return;
        }
        if spec.schedule.contains("TZ") {
            self.event(warning(
                "UnsupportedSchedule",
                format!(
                    "CRON_TZ or TZ used in schedule \"{}\" is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            ));
        }
        let sched = match parse_schedule(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("unparseable schedule: \"{}\" : {e}", spec.schedule);
                self.event(warning("UnparseableSchedule", msg));
                return;
            }
        };
        let Some(scheduled) = self.scheduled_time(&sched, tz, &spec.schedule) else {
            return;
        };
        self.start(scheduled, &sched, tz);
    }

    /// The activation to start now; arms the requeue when there is none.
    fn scheduled_time(&mut self, sched: &Schedule, tz: Tz, text: &str) -> Option<DateTime<Utc>> {
        let r = most_recent_schedule_time(self.cj, self.now, sched, tz, true);
        let Some(scheduled) = r.most_recent.filter(|t| *t <= self.now) else {
            if let Some(e) = r.error {
                self.event(warning(
                    "InvalidSchedule",
                    format!("invalid schedule: {text} : {e}"),
                ));
                return None;
            }
            self.requeue = next_schedule_delay(self.cj, self.now, sched, tz);
            return None;
        };
        if r.missed == Missed::Many {
            self.event(warning(
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
            ));
        }
        let deadline = self
            .cj
            .spec
            .as_ref()
            .and_then(|s| s.starting_deadline_seconds);
        if deadline.is_some_and(|d| scheduled + ChronoDuration::seconds(d) < self.now) {
            let at = scheduled.format("%a, %d %b %Y %H:%M:%S %z");
            self.event(warning(
                "MissSchedule",
                format!("Missed scheduled time to start a job: {at}"),
            ));
            self.requeue = next_schedule_delay(self.cj, self.now, sched, tz);
            return None;
        }
        Some(scheduled)
    }

    /// Concurrency policy, then create (or re-find) the Job for `scheduled`.
    fn start(&mut self, scheduled: DateTime<Utc>, sched: &Schedule, tz: Tz) {
        let name = job_name(self.cj, scheduled);
        let last = time_of(self.status.last_schedule_time.as_ref());
        let listed = self
            .status
            .active
            .iter()
            .flatten()
            .any(|r| r.name.as_deref() == Some(name.as_str()));
        if listed || last == Some(scheduled) {
            self.requeue = self.delay_after(scheduled, sched, tz);
            return;
        }
        let policy = self
            .cj
            .spec
            .as_ref()
            .and_then(|s| s.concurrency_policy.clone())
            .unwrap_or_else(|| "Allow".into());
        let has_active = !self.status.active.as_ref().is_none_or(|a| a.is_empty());
        if policy == "Forbid" && has_active {
            self.event(normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            self.requeue = next_schedule_delay(self.cj, self.now, sched, tz);
            return;
        }
        if policy == "Replace" {
            for r in self.status.active.take().unwrap_or_default() {
                self.delete_job(
                    r.name.as_deref().unwrap_or_default(),
                    r.uid.as_deref().unwrap_or_default(),
                );
            }
        }
        let existing = self
            .jobs
            .iter()
            .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
            .copied();
        match existing {
            Some(j) if finished_type(j).is_some() => {}
            Some(j) => self.active().push(job_ref(j)),
            None => match job_from_template(self.cj, scheduled) {
                Ok(job) => {
                    self.active().push(job_ref(&job));
                    self.actions.push(CronJobAction::CreateJob(Box::new(job)));
                }
                Err(_) => return,
            },
        }
        self.status.last_schedule_time = Some(podutil::chrono_to_time(scheduled));
        self.requeue = self.delay_after(scheduled, sched, tz);
    }

    /// Requeue delay computed as if `scheduled` were already recorded.
    fn delay_after(&self, scheduled: DateTime<Utc>, sched: &Schedule, tz: Tz) -> Option<Duration> {
        let mut cj = self.cj.clone();
        let st = cj.status.get_or_insert_with(Default::default);
        let last = time_of(st.last_schedule_time.as_ref());
        if last.is_none_or(|l| l < scheduled) {
            st.last_schedule_time = Some(podutil::chrono_to_time(scheduled));
        }
        next_schedule_delay(&cj, self.now, sched, tz)
    }

    fn delete_job(&mut self, name: &str, uid: &str) {
        self.actions.push(CronJobAction::DeleteJob {
            name: name.into(),
            uid: uid.into(),
        });
        self.remove_active(uid);
        self.event(normal("SuccessfulDelete", format!("Deleted job {name}")));
    }

    /// Deletes the oldest finished Jobs beyond the history limits.
    fn cleanup_finished(&mut self) {
        self.cleanup_start = self.actions.len();
        let spec = self.cj.spec.clone().unwrap_or_default();
        let limits = [
            (
                "Complete",
                spec.successful_jobs_history_limit
                    .unwrap_or(DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT),
            ),
            (
                "Failed",
                spec.failed_jobs_history_limit
                    .unwrap_or(DEFAULT_FAILED_JOBS_HISTORY_LIMIT),
            ),
        ];
        for (kind, limit) in limits {
            let mut done: Vec<&Job> = self
                .jobs
                .iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .filter(|j| finished_type(j) == Some(kind))
                .copied()
                .collect();
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            done.sort_by(|a, b| by_start_time(a, b));
            for j in done.into_iter().take(excess) {
                self.delete_job(
                    j.metadata.name.as_deref().unwrap_or_default(),
                    j.metadata.uid.as_deref().unwrap_or_default(),
                );
            }
        }
    }

    fn assemble(mut self) -> CronJobPlan {
        if self.status.active.as_ref().is_some_and(|a| a.is_empty()) {
            self.status.active = None;
        }
        let old = self.cj.status.clone().unwrap_or_default();
        if old != self.status {
            // Right after the creation (whose uid it records), else before
            // the history cleanup.
            let at = self
                .actions
                .iter()
                .position(|a| matches!(a, CronJobAction::CreateJob(_)))
                .map_or(self.cleanup_start, |i| i + 1);
            self.actions
                .insert(at, CronJobAction::UpdateStatus(Box::new(self.status)));
        }
        CronJobPlan {
            actions: self.actions,
            requeue_after: self.requeue,
        }
    }
}

/// Upstream `byJobStartTime`: started Jobs first, oldest first, then by name.
fn by_start_time(a: &Job, b: &Job) -> std::cmp::Ordering {
    let start = |j: &Job| time_of(j.status.as_ref().and_then(|s| s.start_time.as_ref()));
    match (start(a), start(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.metadata.name.cmp(&b.metadata.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec,
    };
    use std::collections::BTreeMap;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_run_table() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let cases: [(&str, &str, Tz, Option<&str>); 22] = [
            (
                "*/1 * * * *",
                "2025-01-01T00:00:30Z",
                Tz::UTC,
                Some("2025-01-01T00:01:00Z"),
            ),
            (
                "* * * * *",
                "2025-01-01T00:00:00Z",
                Tz::UTC,
                Some("2025-01-01T00:01:00Z"),
            ),
            (
                "*/15 * * * *",
                "2025-01-01T00:15:00Z",
                Tz::UTC,
                Some("2025-01-01T00:30:00Z"),
            ),
            (
                "5/20 * * * *",
                "2025-01-01T00:06:00Z",
                Tz::UTC,
                Some("2025-01-01T00:25:00Z"),
            ),
            (
                "0 0 29 2 *",
                "2025-03-01T00:00:00Z",
                Tz::UTC,
                Some("2028-02-29T00:00:00Z"),
            ),
            ("0 0 30 2 *", "2025-03-01T00:00:00Z", Tz::UTC, None),
            (
                "0 9-17/4 * * mon-fri",
                "2025-01-03T14:00:00Z",
                Tz::UTC,
                Some("2025-01-03T17:00:00Z"),
            ),
            (
                "0 9-17/4 * * MON-FRI",
                "2025-01-03T17:00:00Z",
                Tz::UTC,
                Some("2025-01-06T09:00:00Z"),
            ),
            (
                "15,45 */2 1 JAN,jul ?",
                "2025-01-01T02:20:00Z",
                Tz::UTC,
                Some("2025-01-01T02:45:00Z"),
            ),
            // Day of month OR day of week (2025-01-01 is a Wednesday).
            (
                "0 0 13 * 5",
                "2025-01-01T00:00:00Z",
                Tz::UTC,
                Some("2025-01-03T00:00:00Z"),
            ),
            (
                "0 0 13 * *",
                "2025-01-01T00:00:00Z",
                Tz::UTC,
                Some("2025-01-13T00:00:00Z"),
            ),
            (
                "0 0 */10 * 1",
                "2025-01-01T00:00:00Z",
                Tz::UTC,
                Some("2025-01-06T00:00:00Z"),
            ),
            (
                "0 0 * * 1",
                "2025-01-01T00:00:00Z",
                Tz::UTC,
                Some("2025-01-06T00:00:00Z"),
            ),
            (
                "@hourly",
                "2025-01-01T00:00:00Z",
                Tz::UTC,
                Some("2025-01-01T01:00:00Z"),
            ),
            (
                "@daily",
                "2025-01-01T10:00:00Z",
                Tz::UTC,
                Some("2025-01-02T00:00:00Z"),
            ),
            (
                "@weekly",
                "2025-01-01T00:00:00Z",
                Tz::UTC,
                Some("2025-01-05T00:00:00Z"),
            ),
            (
                "@monthly",
                "2025-01-15T00:00:00Z",
                Tz::UTC,
                Some("2025-02-01T00:00:00Z"),
            ),
            (
                "@annually",
                "2025-01-15T00:00:00Z",
                Tz::UTC,
                Some("2026-01-01T00:00:00Z"),
            ),
            (
                "@every 90m",
                "2025-01-01T00:00:00.5Z",
                Tz::UTC,
                Some("2025-01-01T01:30:00Z"),
            ),
            // Local zones: 9:00 New York is 14:00Z in winter, 13:00Z in summer.
            (
                "0 9 * * *",
                "2025-01-01T00:00:00Z",
                ny,
                Some("2025-01-01T14:00:00Z"),
            ),
            (
                "0 9 * * *",
                "2025-07-01T00:00:00Z",
                ny,
                Some("2025-07-01T13:00:00Z"),
            ),
            (
                "TZ=Europe/Berlin 0 9 * * *",
                "2025-01-01T00:00:00Z",
                ny,
                Some("2025-01-01T08:00:00Z"),
            ),
        ];
        for (spec, after, tz, want) in cases {
            let s = parse_schedule(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(
                s.next(utc(after), tz),
                want.map(utc),
                "{spec} after {after}"
            );
        }
    }

    #[test]
    fn dst_like_robfig() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // Spring forward (2025-03-09 02:00 EST -> 03:00 EDT): 02:30 does not
        // exist that day and is skipped; the next day runs at 02:30 EDT.
        let s = parse_schedule("30 2 * * *").unwrap();
        let runs = chain(&s, "2025-03-08T12:00:00Z", ny, 2);
        assert_eq!(runs, ["2025-03-10T06:30:00Z", "2025-03-11T06:30:00Z"]);
        // Hourly stays hourly across the gap.
        let s = parse_schedule("0 * * * *").unwrap();
        let runs = chain(&s, "2025-03-09T05:30:00Z", ny, 3);
        assert_eq!(
            runs,
            [
                "2025-03-09T06:00:00Z",
                "2025-03-09T07:00:00Z",
                "2025-03-09T08:00:00Z"
            ]
        );
        // Fall back (2025-11-02 02:00 EDT -> 01:00 EST): 01:30 happens twice.
        let s = parse_schedule("30 1 * * *").unwrap();
        let runs = chain(&s, "2025-11-02T03:00:00Z", ny, 3);
        assert_eq!(
            runs,
            [
                "2025-11-02T05:30:00Z",
                "2025-11-02T06:30:00Z",
                "2025-11-03T06:30:00Z"
            ]
        );
        // Daily midnight keeps local midnight on both sides of the change.
        let s = parse_schedule("@daily").unwrap();
        let runs = chain(&s, "2025-03-08T12:00:00Z", ny, 2);
        assert_eq!(runs, ["2025-03-09T05:00:00Z", "2025-03-10T04:00:00Z"]);
    }

    fn chain(s: &Schedule, from: &str, tz: Tz, n: usize) -> Vec<String> {
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next(t, tz).unwrap();
            out.push(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        out
    }

    #[test]
    fn parse_errors_read_like_robfig() {
        let cases = [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("@often", "unrecognized descriptor: @often"),
            (
                "TZ=Mars/Olympus * * * * *",
                "provided bad location Mars/Olympus: unknown time zone Mars/Olympus",
            ),
            (
                "a * * * *",
                "failed to parse int from a: strconv.Atoi: parsing \"a\": invalid syntax",
            ),
            (
                "@every 1x",
                "failed to parse duration @every 1x: time: invalid duration \"1x\"",
            ),
        ];
        for (spec, msg) in cases {
            assert_eq!(parse_schedule(spec), Err(msg.to_string()), "{spec}");
        }
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
    }

    fn cronjob(schedule: &str, created: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                namespace: Some("ns".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(podutil::chrono_to_time(utc(created))),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "hello".into())])),
                        annotations: Some(BTreeMap::from([("note".into(), "x".into())])),
                        ..Default::default()
                    }),
                    spec: Some(JobSpec::default()),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn owned_job(name: &str, uid: &str, finished: Option<&str>, start: &str) -> Job {
        let conditions = finished.map(|t| {
            vec![JobCondition {
                type_: t.into(),
                status: "True".into(),
                ..Default::default()
            }]
        });
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                owner_references: Some(vec![podutil::owner_ref(
                    "batch/v1", "CronJob", "hello", "cj-uid",
                )]),
                ..Default::default()
            },
            spec: None,
            status: Some(JobStatus {
                conditions,
                start_time: Some(podutil::chrono_to_time(utc(start))),
                completion_time: finished
                    .filter(|t| *t == "Complete")
                    .map(|_| podutil::chrono_to_time(utc(start) + ChronoDuration::seconds(30))),
                ..Default::default()
            }),
        }
    }

    fn created(plan: &CronJobPlan) -> Vec<&Job> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                CronJobAction::CreateJob(j) => Some(&**j),
                _ => None,
            })
            .collect()
    }

    fn status(plan: &CronJobPlan) -> Option<&CronJobStatus> {
        plan.actions.iter().find_map(|a| match a {
            CronJobAction::UpdateStatus(s) => Some(&**s),
            _ => None,
        })
    }

    fn reasons(plan: &CronJobPlan) -> Vec<&str> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                CronJobAction::Event(e) => Some(e.reason.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn creates_the_job_for_the_scheduled_time() {
        let mut cj = cronjob("*/5 * * * *", "2025-01-01T00:00:00Z");
        cj.spec.as_mut().unwrap().time_zone = Some("America/New_York".into());
        let now = utc("2025-01-01T00:05:10Z");
        let mut plan = plan(&cj, &[], now, Tz::UTC);
        let jobs = created(&plan);
        assert_eq!(jobs.len(), 1);
        let j = jobs[0];
        let minutes = utc("2025-01-01T00:05:00Z").timestamp() / 60;
        assert_eq!(j.metadata.name, Some(format!("hello-{minutes}")));
        let ann = j.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            ann[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2024-12-31T19:05:00-05:00"
        );
        assert_eq!(ann["note"], "x");
        assert_eq!(j.metadata.labels.as_ref().unwrap()["app"], "hello");
        let owner = &j.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CronJob", Some(true))
        );
        assert!(matches!(plan.actions[1], CronJobAction::UpdateStatus(_)));
        let mut answer = (*j).clone();
        answer.metadata.uid = Some("new-uid".into());
        plan.job_created(&answer);
        let st = status(&plan).unwrap();
        assert_eq!(
            st.active.as_ref().unwrap()[0].uid.as_deref(),
            Some("new-uid")
        );
        assert_eq!(
            st.last_schedule_time,
            Some(podutil::chrono_to_time(utc("2025-01-01T00:05:00Z")))
        );
        assert_eq!(plan.requeue_after, Some(Duration::from_millis(290_100)));
        assert_eq!(created_job_event("x").message, "Created job x");
    }

    fn with_active(mut cj: CronJob, job: &Job, last: &str) -> CronJob {
        cj.status = Some(CronJobStatus {
            active: Some(vec![job_ref(job)]),
            last_schedule_time: Some(podutil::chrono_to_time(utc(last))),
            last_successful_time: None,
        });
        cj
    }

    #[test]
    fn concurrency_policies() {
        let running = owned_job("hello-1", "j1", None, "2025-01-01T00:00:00Z");
        let now = utc("2025-01-01T01:00:05Z");
        for (policy, creates, deletes, reason) in [
            ("Allow", 1, 0, None),
            ("Forbid", 0, 0, Some("JobAlreadyActive")),
            ("Replace", 1, 1, Some("SuccessfulDelete")),
        ] {
            let mut cj = cronjob("0 * * * *", "2024-12-31T23:30:00Z");
            cj.spec.as_mut().unwrap().concurrency_policy = Some(policy.into());
            let cj = with_active(cj, &running, "2025-01-01T00:00:00Z");
            let plan = plan(&cj, std::slice::from_ref(&running), now, Tz::UTC);
            assert_eq!(created(&plan).len(), creates, "{policy}");
            let dels = plan
                .actions
                .iter()
                .filter(|a| matches!(a, CronJobAction::DeleteJob { name, uid } if name == "hello-1" && uid == "j1"))
                .count();
            assert_eq!(dels, deletes, "{policy}");
            if let Some(r) = reason {
                assert!(
                    reasons(&plan).contains(&r),
                    "{policy}: {:?}",
                    reasons(&plan)
                );
            }
            let active = status(&plan)
                .and_then(|s| s.active.clone())
                .unwrap_or_default();
            let names: Vec<_> = active.iter().filter_map(|r| r.name.clone()).collect();
            let expected = match policy {
                "Allow" => 2,
                "Replace" => 1,
                _ => 0, // Forbid: no status change at all
            };
            assert_eq!(names.len(), expected, "{policy}: {names:?}");
            assert_eq!(plan.requeue_after, Some(Duration::from_millis(3_595_100)));
        }
    }

    #[test]
    fn forbid_event_text() {
        let running = owned_job("hello-1", "j1", None, "2025-01-01T00:00:00Z");
        let mut cj = cronjob("0 * * * *", "2024-12-31T23:30:00Z");
        cj.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
        let cj = with_active(cj, &running, "2025-01-01T00:00:00Z");
        let plan = plan(&cj, &[running], utc("2025-01-01T01:00:05Z"), Tz::UTC);
        assert_eq!(
            plan.actions,
            vec![CronJobAction::Event(normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into()
            ))]
        );
    }

    #[test]
    fn completed_jobs_leave_active_and_history_is_trimmed() {
        let mut jobs: Vec<Job> = (0..5)
            .map(|i| {
                let start = format!("2025-01-01T0{i}:00:00Z");
                owned_job(
                    &format!("hello-ok{i}"),
                    &format!("ok{i}"),
                    Some("Complete"),
                    &start,
                )
            })
            .collect();
        jobs.push(owned_job(
            "hello-bad0",
            "bad0",
            Some("Failed"),
            "2025-01-01T00:30:00Z",
        ));
        jobs.push(owned_job(
            "hello-bad1",
            "bad1",
            Some("Failed"),
            "2025-01-01T01:30:00Z",
        ));
        let cj = with_active(
            cronjob("0 * * * *", "2024-12-31T23:30:00Z"),
            &jobs[4],
            "2025-01-01T04:00:00Z",
        );
        let plan = plan(&cj, &jobs, utc("2025-01-01T04:10:00Z"), Tz::UTC);
        let deleted: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                CronJobAction::DeleteJob { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["hello-ok0", "hello-ok1", "hello-bad0"]);
        let msgs: Vec<String> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                CronJobAction::Event(e) => Some(e.message.clone()),
                _ => None,
            })
            .collect();
        assert!(msgs.contains(&"Saw completed job: hello-ok4, status: Complete".to_string()));
        assert!(msgs.contains(&"Deleted job hello-ok0".to_string()));
        let st = status(&plan).unwrap();
        assert_eq!(st.active, None);
        assert_eq!(
            st.last_successful_time,
            Some(podutil::chrono_to_time(utc("2025-01-01T04:00:30Z")))
        );
        assert!(matches!(plan.actions[1], CronJobAction::UpdateStatus(_)));
        assert_eq!(
            plan.requeue_after,
            Some(Duration::from_millis(50 * 60_000 + 100))
        );
    }

    #[test]
    fn missing_job_and_suspend() {
        let gone = owned_job("hello-9", "j9", None, "2025-01-01T00:00:00Z");
        let mut cj = with_active(
            cronjob("0 * * * *", "2024-12-31T23:30:00Z"),
            &gone,
            "2025-01-01T00:00:00Z",
        );
        cj.spec.as_mut().unwrap().suspend = Some(true);
        let plan = plan(&cj, &[], utc("2025-01-01T05:00:00Z"), Tz::UTC);
        assert_eq!(reasons(&plan), ["MissingJob"]);
        assert!(created(&plan).is_empty());
        assert_eq!(plan.requeue_after, None);
        assert_eq!(status(&plan).unwrap().active, None);
    }

    #[test]
    fn starting_deadline_skips_stale_runs() {
        let mut cj = cronjob("0 * * * *", "2025-01-01T00:00:00Z");
        cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(60);
        let plan = plan(&cj, &[], utc("2025-01-01T05:30:00Z"), Tz::UTC);
        assert!(created(&plan).is_empty());
        assert_eq!(
            plan.requeue_after,
            Some(Duration::from_millis(30 * 60_000 + 100))
        );
        // Within the deadline the run still starts.
        let plan2 = super::plan(&cj, &[], utc("2025-01-01T06:00:30Z"), Tz::UTC);
        assert_eq!(created(&plan2).len(), 1);
    }

    #[test]
    fn too_many_missed_start_times_warns_and_runs_latest() {
        let cj = cronjob("* * * * *", "2025-01-01T00:00:00Z");
        let plan = plan(&cj, &[], utc("2025-01-01T03:20:30Z"), Tz::UTC);
        assert!(reasons(&plan).contains(&"TooManyMissedTimes"));
        let minutes = utc("2025-01-01T03:20:00Z").timestamp() / 60;
        assert_eq!(
            created(&plan)[0].metadata.name,
            Some(format!("hello-{minutes}"))
        );
    }

    #[test]
    fn schedule_problems_are_events() {
        let now = utc("2025-01-01T03:00:00Z");
        let mut cj = cronjob("0 * * * *", "2025-01-01T00:00:00Z");
        cj.spec.as_mut().unwrap().time_zone = Some("Nowhere/Atlantis".into());
        let p = plan(&cj, &[], now, Tz::UTC);
        assert_eq!(reasons(&p), ["UnknownTimeZone"]);
        let cj = cronjob("bogus", "2025-01-01T00:00:00Z");
        assert_eq!(
            reasons(&plan(&cj, &[], now, Tz::UTC)),
            ["UnparseableSchedule"]
        );
        let cj = cronjob("0 0 30 2 *", "2025-01-01T00:00:00Z");
        assert_eq!(reasons(&plan(&cj, &[], now, Tz::UTC)), ["InvalidSchedule"]);
        let cj = cronjob("TZ=UTC 0 * * * *", "2025-01-01T00:00:00Z");
        let p = plan(&cj, &[], now, Tz::UTC);
        assert_eq!(reasons(&p), ["UnsupportedSchedule"]);
        assert_eq!(created(&p).len(), 1);
    }

    #[test]
    fn already_recorded_time_is_not_rerun() {
        let job = owned_job("hello-x", "jx", None, "2025-01-01T01:00:00Z");
        let cj = with_active(
            cronjob("0 * * * *", "2025-01-01T00:00:00Z"),
            &job,
            "2025-01-01T01:00:00Z",
        );
        let plan = plan(&cj, &[job], utc("2025-01-01T01:30:00Z"), Tz::UTC);
        assert_eq!(plan.actions, vec![]);
        assert_eq!(
            plan.requeue_after,
            Some(Duration::from_millis(30 * 60_000 + 100))
        );
    }
}
