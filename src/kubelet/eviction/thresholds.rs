//! Eviction signals and thresholds, parsed as upstream's kubelet parses
//! `--eviction-hard`, `--eviction-soft`, `--eviction-soft-grace-period` and
//! `--eviction-minimum-reclaim` (pure).
//!
//! Invariants: a threshold is either a positive quantity or a percentage in
//! (0 %, 100 %) — `0%` and `100%` switch the signal off like upstream; a
//! signal appears at most once per flag; every soft threshold has a
//! positive grace period; errors name the offending signal and value (the
//! caller adds the flag).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::quantity::parse_quantity;

/// What the eviction manager observes (upstream `evictionapi.Signal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    AllocatableMemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    ContainerFsAvailable,
    ContainerFsInodesFree,
    PidAvailable,
}

/// The node condition a signal drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PressureKind {
    Memory,
    Disk,
    Pid,
}

impl Signal {
    pub const ALL: [Signal; 9] = [
        Signal::MemoryAvailable,
        Signal::AllocatableMemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::ContainerFsAvailable,
        Signal::ContainerFsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::AllocatableMemoryAvailable => "allocatableMemory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::ContainerFsAvailable => "containerfs.available",
            Signal::ContainerFsInodesFree => "containerfs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.as_str() == s)
    }

    /// The resource the eviction message says the node was low on.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable | Signal::ContainerFsAvailable => {
                "ephemeral-storage"
            }
            Signal::NodeFsInodesFree
            | Signal::ImageFsInodesFree
            | Signal::ContainerFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    pub fn pressure(self) -> PressureKind {
        match self.resource() {
            "memory" => PressureKind::Memory,
            "pids" => PressureKind::Pid,
            _ => PressureKind::Disk,
        }
    }

    /// Byte-valued signals print as binary quantities (`100Mi`), counts as
    /// decimal ones.
    pub fn is_bytes(self) -> bool {
        matches!(self.resource(), "memory" | "ephemeral-storage")
    }
}

/// A threshold value: an absolute amount or a fraction of capacity.
#[derive(Clone, Debug, PartialEq)]
pub enum Amount {
    /// The quantity as written (`100Mi`) and its value in whole units.
    Quantity { text: String, value: i128 },
    /// A fraction in (0, 1].
    Percentage(f64),
}

impl Amount {
    /// The amount in whole units for a resource of this capacity.
    pub fn resolve(&self, capacity: i128) -> i128 {
        match self {
            Amount::Quantity { value, .. } => *value,
            Amount::Percentage(p) => (capacity as f64 * p) as i128,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    /// Met while the observed value is below this.
    pub value: Amount,
    /// Zero for hard thresholds.
    pub grace_period: Duration,
    pub hard: bool,
    /// `--eviction-minimum-reclaim`: once met, the threshold counts as met
    /// until the signal is this much above it again.
    pub min_reclaim: Option<Amount>,
}

impl Threshold {
    /// Identity of a threshold across cycles.
    pub fn key(&self) -> (Signal, bool) {
        (self.signal, self.hard)
    }
}

/// Split `a<1,b<2` (`sep` = `<`) or `a=1,b=2` (`sep` = `=`) into pairs.
pub fn split_pairs(s: &str, sep: char) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once(sep)
            .ok_or_else(|| format!("malformed pair {part:?}, expected signal{sep}value"))?;
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

fn signal(name: &str) -> Result<Signal, String> {
    Signal::parse(name).ok_or_else(|| format!("unsupported eviction signal {name}"))
}

fn parse_percentage(signal: &str, val: &str) -> Result<f64, String> {
    let n: f64 = val
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("invalid percentage {val:?} for {signal}"))?;
    Ok(n / 100.0)
}

/// One `signal<value` statement; `None` for `0%`/`100%` (switched off).
pub fn parse_threshold_value(signal: Signal, val: &str) -> Result<Option<Amount>, String> {
    let name = signal.as_str();
    if val.ends_with('%') {
        if val == "0%" || val == "100%" {
            return Ok(None);
        }
        let p = parse_percentage(name, val)?;
        if p < 0.0 {
            return Err(format!(
                "eviction percentage threshold {name} must be >= 0%: {val}"
            ));
        }
        if p > 1.0 {
            return Err(format!(
                "eviction percentage threshold {name} must be <= 100%: {val}"
            ));
        }
        if p == 0.0 {
            return Ok(None);
        }
        return Ok(Some(Amount::Percentage(p)));
    }
    let q = parse_quantity(val).ok_or_else(|| {
        format!(
            "invalid eviction threshold {val:?} for {name}: {}",
            crate::api::quantity::QUANTITY_FORMAT_ERROR
        )
    })?;
    if q.is_negative() || q.is_zero() {
        return Err(format!("eviction threshold {name} must be positive: {q}"));
    }
    Ok(Some(Amount::Quantity {
        text: val.to_string(),
        value: (q.milli_value() + 999) / 1000,
    }))
}

fn parse_min_reclaim(signal: Signal, val: &str) -> Result<Amount, String> {
    let name = signal.as_str();
    if val.ends_with('%') {
        let p = parse_percentage(name, val)?;
        if p <= 0.0 {
            return Err(format!(
                "eviction percentage minimum reclaim {name} must be positive: {val}"
            ));
        }
        return Ok(Amount::Percentage(p));
    }
    let q = parse_quantity(val).ok_or_else(|| {
        format!(
            "invalid minimum reclaim {val:?} for {name}: {}",
            crate::api::quantity::QUANTITY_FORMAT_ERROR
        )
    })?;
    if q.is_negative() {
        return Err(format!(
            "negative eviction minimum reclaim specified for {name}"
        ));
    }
    Ok(Amount::Quantity {
        text: val.to_string(),
        value: (q.milli_value() + 999) / 1000,
    })
}

/// The four flags as raw strings (empty = none).
#[derive(Clone, Debug, Default)]
pub struct ThresholdFlags<'a> {
    pub hard: &'a str,
    pub soft: &'a str,
    pub soft_grace_period: &'a str,
    pub minimum_reclaim: &'a str,
}

/// Which flag an error belongs to, and the message.
pub type FlagError = (&'static str, String);

/// All thresholds from the flags, hard first, in the order written.
pub fn parse_thresholds(f: &ThresholdFlags) -> Result<Vec<Threshold>, FlagError> {
    let mut min_reclaims: BTreeMap<Signal, Amount> = BTreeMap::new();
    for (k, v) in
        split_pairs(f.minimum_reclaim, '=').map_err(|e| ("eviction-minimum-reclaim", e))?
    {
        let s = signal(&k).map_err(|e| ("eviction-minimum-reclaim", e))?;
        let a = parse_min_reclaim(s, &v).map_err(|e| ("eviction-minimum-reclaim", e))?;
        if min_reclaims.insert(s, a).is_some() {
            return Err((
                "eviction-minimum-reclaim",
                format!("duplicate eviction minimum reclaim specified for {k}"),
            ));
        }
    }
    let mut graces: BTreeMap<Signal, Duration> = BTreeMap::new();
    for (k, v) in
        split_pairs(f.soft_grace_period, '=').map_err(|e| ("eviction-soft-grace-period", e))?
    {
        let s = signal(&k).map_err(|e| ("eviction-soft-grace-period", e))?;
        let d = crate::config::parse_duration(&v)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                (
                    "eviction-soft-grace-period",
                    format!(
                        "invalid eviction grace period specified: {v}, must be a positive value"
                    ),
                )
            })?;
        graces.insert(s, d);
    }
    let mut out = Vec::new();
    for (flag, text, hard) in [
        ("eviction-hard", f.hard, true),
        ("eviction-soft", f.soft, false),
    ] {
        let mut seen = Vec::new();
        for (k, v) in split_pairs(text, '<').map_err(|e| (flag, e))? {
            let s = signal(&k).map_err(|e| (flag, e))?;
            if seen.contains(&s) {
                return Err((
                    flag,
                    format!("found duplicate eviction threshold for signal {k}"),
                ));
            }
            seen.push(s);
            let Some(value) = parse_threshold_value(s, &v).map_err(|e| (flag, e))? else {
                continue;
            };
            let grace_period = if hard {
                Duration::ZERO
            } else {
                *graces.get(&s).ok_or_else(|| {
                    (
                        "eviction-soft-grace-period",
                        format!(
                            "grace period must be specified for the soft eviction threshold {k}"
                        ),
                    )
                })?
            };
            out.push(Threshold {
                signal: s,
                value,
                grace_period,
                hard,
                min_reclaim: min_reclaims.get(&s).cloned(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(hard: &str) -> ThresholdFlags<'_> {
        ThresholdFlags {
            hard,
            ..Default::default()
        }
    }

    #[test]
    fn hard_thresholds_parse_like_upstream() {
        let mi = |n: i128| n * 1024 * 1024;
        type Case<'a> = (&'a str, Result<Vec<(Signal, Amount)>, &'a str>);
        let cases: &[Case] = &[
            (
                "memory.available<100Mi,nodefs.available<10%",
                Ok(vec![
                    (
                        Signal::MemoryAvailable,
                        Amount::Quantity {
                            text: "100Mi".into(),
                            value: mi(100),
                        },
                    ),
                    (Signal::NodeFsAvailable, Amount::Percentage(0.1)),
                ]),
            ),
            ("", Ok(vec![])),
            (
                "pid.available<1k",
                Ok(vec![(
                    Signal::PidAvailable,
                    Amount::Quantity {
                        text: "1k".into(),
                        value: 1000,
                    },
                )]),
            ),
            ("imagefs.available<0%,nodefs.available<100%", Ok(vec![])),
            (
                "nodefs.inodesFree<5.5%",
                Ok(vec![(Signal::NodeFsInodesFree, Amount::Percentage(0.055))]),
            ),
            (
                "memory.free<1Gi",
                Err("unsupported eviction signal memory.free"),
            ),
            (
                "memory.available<0",
                Err("eviction threshold memory.available must be positive: 0"),
            ),
            ("memory.available<-1Mi", Err("must be positive")),
            (
                "memory.available<lots",
                Err("invalid eviction threshold \"lots\""),
            ),
            ("nodefs.available<150%", Err("must be <= 100%: 150%")),
            ("nodefs.available<-5%", Err("must be >= 0%: -5%")),
            ("memory.available=1Gi", Err("malformed pair")),
            (
                "memory.available<1Gi,memory.available<2Gi",
                Err("duplicate eviction threshold"),
            ),
        ];
        for (input, want) in cases {
            let got = parse_thresholds(&flags(input));
            match (got, want) {
                (Ok(ts), Ok(w)) => {
                    let got: Vec<(Signal, Amount)> =
                        ts.iter().map(|t| (t.signal, t.value.clone())).collect();
                    assert_eq!(&got, w, "{input}");
                    assert!(ts.iter().all(|t| t.hard && t.grace_period.is_zero()));
                }
                (Err((flag, e)), Err(w)) => {
                    assert_eq!(flag, "eviction-hard", "{input}");
                    assert!(e.contains(w), "{input}: {e}");
                }
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn soft_thresholds_need_grace_periods_and_min_reclaim_attaches() {
        let ok = parse_thresholds(&ThresholdFlags {
            hard: "memory.available<100Mi",
            soft: "memory.available<1Gi",
            soft_grace_period: "memory.available=1m30s",
            minimum_reclaim: "memory.available=50Mi,nodefs.available=5%",
        })
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].grace_period, Duration::from_secs(90));
        assert!(!ok[1].hard);
        assert_eq!(
            ok[0].min_reclaim,
            Some(Amount::Quantity {
                text: "50Mi".into(),
                value: 50 << 20
            })
        );
        let cases = [
            (
                ThresholdFlags {
                    soft: "memory.available<1Gi",
                    ..Default::default()
                },
                "eviction-soft-grace-period",
                "grace period must be specified",
            ),
            (
                ThresholdFlags {
                    soft: "memory.available<1Gi",
                    soft_grace_period: "memory.available=0s",
                    ..Default::default()
                },
                "eviction-soft-grace-period",
                "must be a positive value",
            ),
            (
                ThresholdFlags {
                    soft_grace_period: "bogus=1m",
                    ..Default::default()
                },
                "eviction-soft-grace-period",
                "unsupported eviction signal bogus",
            ),
            (
                ThresholdFlags {
                    minimum_reclaim: "memory.available=-1Mi",
                    ..Default::default()
                },
                "eviction-minimum-reclaim",
                "negative eviction minimum reclaim",
            ),
            (
                ThresholdFlags {
                    minimum_reclaim: "nodefs.available=0%",
                    ..Default::default()
                },
                "eviction-minimum-reclaim",
                "must be positive",
            ),
            (
                ThresholdFlags {
                    soft: "memory.available<x",
                    soft_grace_period: "memory.available=1m",
                    ..Default::default()
                },
                "eviction-soft",
                "invalid eviction threshold",
            ),
        ];
        for (f, flag, want) in cases {
            let (got_flag, e) = parse_thresholds(&f).unwrap_err();
            assert_eq!(got_flag, flag, "{f:?}");
            assert!(e.contains(want), "{f:?}: {e}");
        }
    }

    #[test]
    fn amounts_resolve_against_capacity() {
        assert_eq!(Amount::Percentage(0.1).resolve(1000), 100);
        assert_eq!(
            Amount::Quantity {
                text: "1".into(),
                value: 1
            }
            .resolve(1000),
            1
        );
        assert_eq!(Signal::ImageFsAvailable.resource(), "ephemeral-storage");
        assert_eq!(Signal::PidAvailable.pressure(), PressureKind::Pid);
        assert_eq!(Signal::NodeFsInodesFree.pressure(), PressureKind::Disk);
    }
}
