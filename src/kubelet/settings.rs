//! Kubelet settings given as `--kubelet-arg key=value` (repeatable, like
//! k3s), parsed once into [`KubeletSettings`] (pure).
//!
//! Keys are upstream kubelet flag names. Defaults are upstream's, except
//! the disk eviction thresholds, which follow k3s (`imagefs.available<5%`,
//! `nodefs.available<5%`, minimum reclaim 10 %): small edge disks would
//! otherwise sit in DiskPressure forever.
//!
//! Invariants: an unknown key, a value without `=`, or a bad value is an
//! error naming `--kubelet-arg` and the key; a later occurrence of a key
//! overrides an earlier one; image GC thresholds satisfy
//! `0 <= low < high <= 100`.

use std::time::Duration;

use super::eviction::thresholds::{self, Threshold, ThresholdFlags};

/// Upstream `--eviction-hard` default, with k3s's disk thresholds.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<5%,imagefs.available<5%,nodefs.inodesFree<5%";
/// k3s's `--eviction-minimum-reclaim` default.
pub const DEFAULT_EVICTION_MINIMUM_RECLAIM: &str = "imagefs.available=10%,nodefs.available=10%";

/// Every key `--kubelet-arg` accepts.
pub const KNOWN_KEYS: [&str; 13] = [
    "kube-reserved",
    "system-reserved",
    "max-pods",
    "image-gc-high-threshold",
    "image-gc-low-threshold",
    "minimum-image-ttl-duration",
    "eviction-hard",
    "eviction-soft",
    "eviction-soft-grace-period",
    "eviction-pressure-transition-period",
    "eviction-minimum-reclaim",
    "housekeeping-interval",
    // skiff extension (upstream's period is a constant): lets tests run GC often
    "image-gc-period",
];

/// Resources kept back from pods (`kube-reserved`, `system-reserved`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
}

impl Reserved {
    /// Upstream's `cpu=200m,memory=256Mi,ephemeral-storage=1Gi,pid=100`
    /// (`pid` is accepted and not enforced).
    fn parse(key: &str, value: &str) -> Result<Reserved, String> {
        let mut r = Reserved::default();
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, q) = pair.split_once('=').ok_or_else(|| {
                arg_error(key, value, format!("{pair:?} is not resource=quantity"))
            })?;
            let amount = crate::api::quantity::parse_quantity(q.trim())
                .filter(|q| !q.is_negative())
                .ok_or_else(|| {
                    arg_error(key, value, format!("{q:?} is not a non-negative quantity"))
                })?;
            let whole = |q: &crate::api::quantity::Quantity| -> u64 {
                u64::try_from(q.milli_value().div_euclid(1000)).unwrap_or(u64::MAX)
            };
            match name.trim() {
                "cpu" => r.cpu_millis = u64::try_from(amount.milli_value()).unwrap_or(u64::MAX),
                "memory" => r.memory_bytes = whole(&amount),
                "ephemeral-storage" => r.ephemeral_storage_bytes = whole(&amount),
                "pid" => {}
                other => {
                    return Err(arg_error(
                        key,
                        value,
                        format!(
                            "unsupported resource {other:?}; supported: cpu, memory, ephemeral-storage, pid"
                        ),
                    ));
                }
            }
        }
        Ok(r)
    }

    /// The sum of two reservations.
    pub fn plus(self, o: Reserved) -> Reserved {
        Reserved {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            ephemeral_storage_bytes: self
                .ephemeral_storage_bytes
                .saturating_add(o.ephemeral_storage_bytes),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct KubeletSettings {
    /// `kube-reserved` and `system-reserved`, summed: kept from allocatable.
    pub reserved: Reserved,
    /// The node's pod capacity (`max-pods`, upstream default 110).
    pub max_pods: u32,
    /// Percent of image filesystem usage that starts image GC.
    pub image_gc_high_threshold: u8,
    /// Percent image GC frees down to.
    pub image_gc_low_threshold: u8,
    /// An unused image younger than this is never collected.
    pub minimum_image_ttl: Duration,
    /// How often image GC runs (upstream: a 5 minute constant).
    pub image_gc_period: Duration,
    /// Hard and soft eviction thresholds.
    pub eviction_thresholds: Vec<Threshold>,
    /// How long a pressure condition stays True after the last observation.
    pub eviction_pressure_transition_period: Duration,
    /// How often the eviction manager observes signals.
    pub housekeeping_interval: Duration,
}

impl Default for KubeletSettings {
    fn default() -> Self {
        let eviction_thresholds = thresholds::parse_thresholds(&ThresholdFlags {
            hard: DEFAULT_EVICTION_HARD,
            minimum_reclaim: DEFAULT_EVICTION_MINIMUM_RECLAIM,
            ..Default::default()
        })
        .unwrap_or_default();
        KubeletSettings {
            reserved: Reserved::default(),
            max_pods: 110,
            image_gc_high_threshold: 85,
            image_gc_low_threshold: 80,
            minimum_image_ttl: Duration::from_secs(120),
            image_gc_period: Duration::from_secs(300),
            eviction_thresholds,
            eviction_pressure_transition_period: Duration::from_secs(300),
            housekeeping_interval: Duration::from_secs(10),
        }
    }
}

fn arg_error(key: &str, value: &str, why: impl std::fmt::Display) -> String {
    format!("invalid value for --kubelet-arg {key}={value}: {why}")
}

fn duration(key: &str, value: &str, allow_zero: bool) -> Result<Duration, String> {
    crate::config::parse_duration(value)
        .filter(|d| allow_zero || !d.is_zero())
        .ok_or_else(|| arg_error(key, value, "expected a duration such as 10s, 2m or 1h30m"))
}

fn percent(key: &str, value: &str) -> Result<u8, String> {
    value
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| arg_error(key, value, "expected a whole percentage between 0 and 100"))
}

impl KubeletSettings {
    /// Settings from `--kubelet-arg` values (each `key=value`; a leading
    /// `--` on the key is accepted).
    pub fn from_args(args: &[String]) -> Result<KubeletSettings, String> {
        let mut s = KubeletSettings::default();
        let mut hard = DEFAULT_EVICTION_HARD.to_string();
        let mut soft = String::new();
        let mut grace = String::new();
        let mut reclaim = DEFAULT_EVICTION_MINIMUM_RECLAIM.to_string();
        let (mut kube, mut system) = (Reserved::default(), Reserved::default());
        for arg in args {
            let (key, value) = arg.split_once('=').ok_or_else(|| {
                format!("invalid --kubelet-arg {arg:?}: expected key=value, such as eviction-hard=memory.available<100Mi")
            })?;
            let key = key.trim().trim_start_matches("--");
            let value = value.trim();
            match key {
                "kube-reserved" => kube = Reserved::parse(key, value)?,
                "system-reserved" => system = Reserved::parse(key, value)?,
                "max-pods" => {
                    s.max_pods = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| arg_error(key, value, "expected a positive whole number"))?
                }
                "image-gc-high-threshold" => s.image_gc_high_threshold = percent(key, value)?,
                "image-gc-low-threshold" => s.image_gc_low_threshold = percent(key, value)?,
                "minimum-image-ttl-duration" => s.minimum_image_ttl = duration(key, value, true)?,
                "image-gc-period" => s.image_gc_period = duration(key, value, false)?,
                "eviction-hard" => hard = value.to_string(),
                "eviction-soft" => soft = value.to_string(),
                "eviction-soft-grace-period" => grace = value.to_string(),
                "eviction-minimum-reclaim" => reclaim = value.to_string(),
                "eviction-pressure-transition-period" => {
                    s.eviction_pressure_transition_period = duration(key, value, true)?
                }
                "housekeeping-interval" => s.housekeeping_interval = duration(key, value, false)?,
                _ => {
                    return Err(format!(
                        "unknown --kubelet-arg key {key:?}; supported: {}",
                        KNOWN_KEYS.join(", ")
                    ));
                }
            }
        }
        s.reserved = kube.plus(system);
        if s.image_gc_low_threshold >= s.image_gc_high_threshold {
            return Err(format!(
                "invalid --kubelet-arg image-gc-low-threshold={}: must be less than image-gc-high-threshold ({})",
                s.image_gc_low_threshold, s.image_gc_high_threshold
            ));
        }
        s.eviction_thresholds = thresholds::parse_thresholds(&ThresholdFlags {
            hard: &hard,
            soft: &soft,
            soft_grace_period: &grace,
            minimum_reclaim: &reclaim,
        })
        .map_err(|(flag, e)| {
            let value = match flag {
                "eviction-hard" => &hard,
                "eviction-soft" => &soft,
                "eviction-soft-grace-period" => &grace,
                _ => &reclaim,
            };
            arg_error(flag, value, e)
        })?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::eviction::thresholds::{Amount, Signal};

    fn parse(args: &[&str]) -> Result<KubeletSettings, String> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        KubeletSettings::from_args(&v)
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).unwrap();
        assert_eq!(s, KubeletSettings::default());
        assert_eq!(
            (s.image_gc_high_threshold, s.image_gc_low_threshold),
            (85, 80)
        );
        assert_eq!(s.minimum_image_ttl, Duration::from_secs(120));
        assert_eq!(
            s.eviction_pressure_transition_period,
            Duration::from_secs(300)
        );
        assert_eq!(s.housekeeping_interval, Duration::from_secs(10));
        let sig: Vec<Signal> = s.eviction_thresholds.iter().map(|t| t.signal).collect();
        assert_eq!(
            sig,
            [
                Signal::MemoryAvailable,
                Signal::NodeFsAvailable,
                Signal::ImageFsAvailable,
                Signal::NodeFsInodesFree
            ]
        );
        assert_eq!(
            s.eviction_thresholds[2].min_reclaim,
            Some(Amount::Percentage(0.1))
        );
    }

    #[test]
    fn reserved_and_max_pods() {
        let s = parse(&[
            "kube-reserved=cpu=200m,memory=256Mi",
            "system-reserved=cpu=1,memory=1Gi,ephemeral-storage=2Gi,pid=1000",
            "max-pods=250",
        ])
        .unwrap();
        assert_eq!(
            s.reserved,
            Reserved {
                cpu_millis: 1200,
                memory_bytes: (256 << 20) + (1 << 30),
                ephemeral_storage_bytes: 2 << 30,
            }
        );
        assert_eq!(s.max_pods, 250);
        for (args, want) in [
            (&["kube-reserved=gpu=1"][..], "unsupported resource \"gpu\""),
            (
                &["kube-reserved=cpu"][..],
                "\"cpu\" is not resource=quantity",
            ),
            (
                &["system-reserved=memory=-1Gi"][..],
                "not a non-negative quantity",
            ),
            (
                &["max-pods=0"][..],
                "invalid value for --kubelet-arg max-pods=0",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn values_and_errors() {
        let s = parse(&[
            "image-gc-high-threshold=1",
            "image-gc-low-threshold=0",
            "--minimum-image-ttl-duration=1s",
            "eviction-hard=memory.available<1Gi",
            "eviction-soft=memory.available<2Gi",
            "eviction-soft-grace-period=memory.available=30s",
            "eviction-pressure-transition-period=5s",
            "housekeeping-interval=1s",
        ])
        .unwrap();
        assert_eq!(
            (s.image_gc_high_threshold, s.image_gc_low_threshold),
            (1, 0)
        );
        assert_eq!(s.minimum_image_ttl, Duration::from_secs(1));
        assert_eq!(s.eviction_thresholds.len(), 2);
        assert_eq!(
            s.eviction_pressure_transition_period,
            Duration::from_secs(5)
        );
        assert_eq!(s.housekeeping_interval, Duration::from_secs(1));
        let cases = [
            (&["bogus=1"][..], "unknown --kubelet-arg key \"bogus\""),
            (&["eviction-hard"][..], "expected key=value"),
            (
                &["image-gc-high-threshold=101"][..],
                "image-gc-high-threshold=101",
            ),
            (
                &["image-gc-low-threshold=90"][..],
                "must be less than image-gc-high-threshold",
            ),
            (
                &["image-gc-high-threshold=5", "image-gc-low-threshold=5"][..],
                "must be less than",
            ),
            (
                &["minimum-image-ttl-duration=soon"][..],
                "minimum-image-ttl-duration=soon",
            ),
            (
                &["housekeeping-interval=0s"][..],
                "housekeeping-interval=0s",
            ),
            (
                &["eviction-hard=memory.available<x"][..],
                "--kubelet-arg eviction-hard=memory.available<x",
            ),
            (
                &["eviction-soft=memory.available<1Gi"][..],
                "eviction-soft-grace-period",
            ),
            (
                &["eviction-minimum-reclaim=nodefs.available=-1"][..],
                "eviction-minimum-reclaim",
            ),
        ];
        for (args, want) in cases {
            let e = parse(args).unwrap_err();
            assert!(e.contains("--kubelet-arg"), "{args:?}: {e}");
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
