//! The scheduling queue (upstream `PriorityQueue`): an active heap ordered by
//! priority then enqueue time, a backoff queue (1 s doubling per attempt up
//! to 10 s), and an unschedulable set that cluster events (or 5 minutes)
//! move back. Time is passed in (`Instant`); nothing here sleeps.
//!
//! Owns: pending-pod bookkeeping keyed by `namespace/name` (a new uid
//! replaces the old pod), attempt counts, which queue a pod is in, and which
//! cluster events can make an unschedulable pod schedulable (a cheap form of
//! upstream's queueing hints, by the rejecting plugins).
//!
//! Invariants: a pod is in exactly one place (active, backoff, unschedulable
//! or in flight); heaps use lazy deletion (entries carry a generation and
//! stale ones are skipped).
//!
//! Must not: do I/O, read clocks, or decide placement.

use crate::scheduler::framework::FitError;
use crate::scheduler::plugins::Reason;
use k8s_openapi::api::core::v1::Pod;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often.
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(300);

/// Cluster changes that may make unschedulable pods schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate,
    /// An assigned pod was deleted (or became terminal).
    AssignedPodDelete,
    /// A pod was bound/added to a node (matters for pod affinity/spread).
    AssignedPodAdd,
    /// A PVC, PV or StorageClass changed.
    VolumeChange,
    /// A namespace's labels changed (affinity namespaceSelector).
    NamespaceChange,
}

/// Bit set of what rejected a pod (which events can help it).
pub type RejectionMask = u32;
const R_NODE: RejectionMask = 1; // helped by node add/update only
const R_RESOURCES: RejectionMask = 2; // resources, ports, pod count, anti-affinity
const R_AFFINITY: RejectionMask = 4; // required affinity / spread
const R_VOLUME: RejectionMask = 8;
const R_ALL: RejectionMask = u32::MAX;

/// Which events matter for a failed attempt.
pub fn rejection_mask(err: &FitError) -> RejectionMask {
    if err.pre_filter_msg.is_some() {
        return R_VOLUME | R_NODE;
    }
    if err.num_all_nodes == 0 {
        return R_NODE;
    }
    err.reasons.keys().fold(0, |m, r| m | reason_mask(r))
}

fn reason_mask(r: &Reason) -> RejectionMask {
    match r {
        Reason::NodeUnschedulable
        | Reason::NodeName
        | Reason::UntoleratedTaint { .. }
        | Reason::NodeAffinity
        | Reason::NodeAffinityPreFilter => R_NODE,
        Reason::NodePorts
        | Reason::TooManyPods
        | Reason::Insufficient { .. }
        | Reason::ExistingAntiAffinity
        | Reason::AntiAffinity => R_NODE | R_RESOURCES,
        Reason::VolumeNodeAffinityConflict => R_NODE | R_VOLUME,
        Reason::TopologySpread | Reason::TopologySpreadMissingLabel => {
            R_NODE | R_RESOURCES | R_AFFINITY
        }
        Reason::Affinity => R_NODE | R_AFFINITY,
        Reason::PreemptionNotHelpful | Reason::NoPreemptionVictims => R_ALL,
    }
}

fn event_mask(e: ClusterEvent) -> RejectionMask {
    match e {
        ClusterEvent::NodeAdd | ClusterEvent::NodeUpdate => R_ALL,
        ClusterEvent::AssignedPodDelete => R_RESOURCES | R_AFFINITY,
        ClusterEvent::AssignedPodAdd => R_AFFINITY,
        ClusterEvent::VolumeChange => R_VOLUME,
        ClusterEvent::NamespaceChange => R_AFFINITY | R_RESOURCES,
    }
}

/// `namespace/name` of a pod.
pub fn queue_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

#[derive(Debug, Clone)]
struct Entry {
    pod: Arc<Pod>,
    place: Place,
    generation: u64,
    attempts: u32,
    /// When it (re)entered a queue; orders equal priorities and starts
    /// backoff/unschedulable clocks.
    timestamp: Instant,
    /// Scheduling cycle of the last pop.
    cycle: u64,
    rejection: RejectionMask,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    key: String,
    generation: u64,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The pending-pod queue.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String, u64)>>,
    /// Keys currently unschedulable, and their 5-minute deadlines (lazy).
    unschedulable: HashSet<String>,
    unschedulable_deadlines: BinaryHeap<Reverse<(Instant, String, u64)>>,
    seq: u64,
    generation: u64,
    cycle: u64,
    /// Per event kind bit: the cycle of the last such event.
    event_cycles: Vec<(RejectionMask, u64)>,
}

/// Upstream `calculateBackoffDuration`: 1 s doubled per extra attempt,
/// capped at 10 s.
pub fn backoff_duration(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        d = d.saturating_mul(2);
        if d >= MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d
}

impl SchedulingQueue {
    pub fn new() -> SchedulingQueue {
        SchedulingQueue::default()
    }

    /// Pods known to the queue (any place, including in flight).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts of (active, backoff, unschedulable, in flight).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for e in self.entries.values() {
            match e.place {
                Place::Active => c.0 += 1,
                Place::Backoff => c.1 += 1,
                Place::Unschedulable => c.2 += 1,
                Place::InFlight => c.3 += 1,
            }
        }
        c
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn next_gen(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    fn push_active(&mut self, key: &str, now: Instant) {
        self.unschedulable.remove(key);
        let generation = self.next_gen();
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.place = Place::Active;
        e.generation = generation;
        e.timestamp = now;
        self.active.push(ActiveItem {
            priority: e.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            timestamp: now,
            seq,
            key: key.to_string(),
            generation,
        });
    }

    fn push_backoff(&mut self, key: &str) {
        self.unschedulable.remove(key);
        let generation = self.next_gen();
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.place = Place::Backoff;
        e.generation = generation;
        let until = e.timestamp + backoff_duration(e.attempts);
        self.backoff
            .push(Reverse((until, seq, key.to_string(), generation)));
    }

    fn backing_off(e: &Entry, now: Instant) -> bool {
        e.attempts > 0 && e.timestamp + backoff_duration(e.attempts) > now
    }

    /// A new pending pod (watch add). An existing entry is updated instead.
    pub fn add(&mut self, pod: impl Into<Arc<Pod>>, now: Instant) {
        let pod = pod.into();
        let key = queue_key(&pod);
        if self.entries.contains_key(&key) {
            self.update(pod, now);
            return;
        }
        self.entries.insert(
            key.clone(),
            Entry {
                pod,
                place: Place::Active,
                generation: 0,
                attempts: 0,
                timestamp: now,
                cycle: 0,
                rejection: 0,
            },
        );
        self.push_active(&key, now);
    }

    /// A pending pod changed (watch update). A new uid replaces the pod
    /// entirely; a changed spec/labels/annotations moves an unschedulable
    /// pod back (to backoff if still backing off); status-only changes just
    /// refresh the stored object.
    pub fn update(&mut self, pod: impl Into<Arc<Pod>>, now: Instant) {
        let pod = pod.into();
        let key = queue_key(&pod);
        let Some(e) = self.entries.get_mut(&key) else {
            self.add(pod, now);
            return;
        };
        if e.pod.metadata.uid != pod.metadata.uid {
            self.entries.remove(&key);
            self.unschedulable.remove(&key);
            self.add(pod, now);
            return;
        }
        let changed = e.pod.spec != pod.spec
            || e.pod.metadata.labels != pod.metadata.labels
            || e.pod.metadata.annotations != pod.metadata.annotations;
        let priority_changed = e.pod.spec.as_ref().and_then(|s| s.priority)
            != pod.spec.as_ref().and_then(|s| s.priority);
        e.pod = pod;
        match e.place {
            Place::Unschedulable if changed => {
                if Self::backing_off(e, now) {
                    self.push_backoff(&key);
                } else {
                    self.push_active(&key, now);
                }
            }
            Place::Active if priority_changed => {
                let ts = e.timestamp;
                self.push_active(&key, ts);
            }
            _ => {}
        }
    }

    /// The pod was deleted or got bound by someone else.
    pub fn delete(&mut self, pod: &Pod) {
        let key = queue_key(pod);
        if let Some(e) = self.entries.get(&key)
            && (pod.metadata.uid.is_none() || e.pod.metadata.uid == pod.metadata.uid)
        {
            self.entries.remove(&key);
            self.unschedulable.remove(&key);
        }
    }

    /// Moves due backoff pods and 5-minute-old unschedulable pods to active.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, _, key, generation))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.place == Place::Backoff && e.generation == generation)
            {
                self.push_active(&key, now);
            }
        }
        while let Some(Reverse((deadline, key, generation))) =
            self.unschedulable_deadlines.peek().cloned()
        {
            if deadline > now {
                break;
            }
            self.unschedulable_deadlines.pop();
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.place == Place::Unschedulable && e.generation == generation)
            {
                self.requeue(&key, now);
            }
        }
    }

    fn requeue(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        if Self::backing_off(e, now) {
            self.push_backoff(key);
        } else {
            self.push_active(key, now);
        }
    }

    /// Takes the next pod to schedule (after `flush`), marking it in flight.
    pub fn pop(&mut self, now: Instant) -> Option<Arc<Pod>> {
        self.flush(now);
        while let Some(item) = self.active.pop() {
            let cycle = self.cycle + 1;
            let Some(e) = self.entries.get_mut(&item.key) else {
                continue;
            };
            if e.place != Place::Active || e.generation != item.generation {
                continue;
            }
            self.cycle = cycle;
            e.place = Place::InFlight;
            e.attempts += 1;
            e.cycle = cycle;
            return Some(e.pod.clone());
        }
        None
    }

    /// The in-flight pod was bound: forget it.
    pub fn done_scheduled(&mut self, pod: &Pod) {
        let key = queue_key(pod);
        self.entries.remove(&key);
        self.unschedulable.remove(&key);
    }

    /// The in-flight pod fit nowhere. It waits for a relevant cluster event
    /// (or 5 minutes); if such an event already happened during its attempt
    /// it goes to backoff instead.
    pub fn done_unschedulable(&mut self, pod: &Pod, rejection: RejectionMask, now: Instant) {
        let key = queue_key(pod);
        let generation = self.next_gen();
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if e.place != Place::InFlight {
            return;
        }
        e.timestamp = now;
        e.rejection = rejection;
        let cycle = e.cycle;
        let missed = self
            .event_cycles
            .iter()
            .any(|(m, c)| m & rejection != 0 && *c >= cycle);
        if missed {
            self.push_backoff(&key);
        } else {
            e.place = Place::Unschedulable;
            e.generation = generation;
            self.unschedulable.insert(key.clone());
            self.unschedulable_deadlines.push(Reverse((
                now + MAX_UNSCHEDULABLE_DURATION,
                key,
                generation,
            )));
        }
    }

    /// The in-flight pod hit a transient error (bind failed, API error):
    /// retry after backoff.
    pub fn done_error(&mut self, pod: &Pod, now: Instant) {
        let key = queue_key(pod);
        if let Some(e) = self.entries.get_mut(&key)
            && e.place == Place::InFlight
        {
            e.timestamp = now;
            self.push_backoff(&key);
        }
    }

    /// A cluster event: unschedulable pods it may help move to active (or
    /// backoff if still backing off).
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) {
        let mask = event_mask(event);
        match self.event_cycles.iter_mut().find(|(m, _)| *m == mask) {
            Some(slot) => slot.1 = self.cycle,
            None => self.event_cycles.push((mask, self.cycle)),
        }
        let keys: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .is_some_and(|e| e.rejection & mask != 0)
            })
            .cloned()
            .collect();
        for key in keys {
            self.requeue(&key, now);
        }
    }

    /// When the shell should call `pop` again if nothing else happens: the
    /// earliest backoff expiry or unschedulable timeout (None if neither).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let backoff = self
            .backoff
            .iter()
            .filter(|Reverse((_, _, k, g))| {
                self.entries
                    .get(k)
                    .is_some_and(|e| e.place == Place::Backoff && e.generation == *g)
            })
            .map(|Reverse((t, ..))| *t)
            .min();
        let unsched = self
            .unschedulable
            .iter()
            .filter_map(|k| self.entries.get(k))
            .map(|e| e.timestamp + MAX_UNSCHEDULABLE_DURATION)
            .min();
        match (backoff, unsched) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::make_pod;

    fn pod(name: &str, priority: i32) -> Pod {
        let mut p = make_pod(name, 1, 1, None);
        p.spec.as_mut().unwrap().priority = Some(priority);
        p
    }

    fn name(p: Option<Arc<Pod>>) -> String {
        p.and_then(|p| p.metadata.name.clone()).unwrap_or_default()
    }

    const CPU: RejectionMask = R_NODE | R_RESOURCES;

    #[test]
    fn backoff_table() {
        for (attempts, secs) in [(0, 1), (1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (30, 10)] {
            assert_eq!(
                backoff_duration(attempts),
                Duration::from_secs(secs),
                "{attempts}"
            );
        }
    }

    #[test]
    fn priority_then_fifo() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("low", 0), t0);
        q.add(pod("high", 10), t0 + Duration::from_millis(1));
        q.add(pod("low2", 0), t0 + Duration::from_millis(2));
        let now = t0 + Duration::from_millis(3);
        assert_eq!(name(q.pop(now)), "high");
        assert_eq!(name(q.pop(now)), "low");
        assert_eq!(name(q.pop(now)), "low2");
        assert!(q.pop(now).is_none());
        assert_eq!(q.counts(), (0, 0, 0, 3));
    }

    #[test]
    fn unschedulable_waits_for_relevant_event_then_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        let p = pod("p", 0);
        q.add(p.clone(), t0);
        assert!(q.pop(t0).is_some());
        q.done_unschedulable(&p, CPU, t0);
        assert_eq!(q.counts(), (0, 0, 1, 0));
        // a pod getting bound elsewhere does not help a cpu-starved pod
        q.on_event(ClusterEvent::AssignedPodAdd, t0);
        assert_eq!(q.counts(), (0, 0, 1, 0));
        // a deletion does; still within its 1 s backoff, so it goes to backoff
        q.on_event(
            ClusterEvent::AssignedPodDelete,
            t0 + Duration::from_millis(500),
        );
        assert_eq!(q.counts(), (0, 1, 0, 0));
        assert!(q.pop(t0 + Duration::from_millis(900)).is_none());
        assert_eq!(q.next_wakeup(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(name(q.pop(t0 + Duration::from_secs(1))), "p");
    }

    #[test]
    fn event_during_attempt_sends_to_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        let p = pod("p", 0);
        q.add(p.clone(), t0);
        q.pop(t0);
        q.on_event(ClusterEvent::NodeAdd, t0);
        q.done_unschedulable(&p, CPU, t0);
        assert_eq!(q.counts(), (0, 1, 0, 0));
    }

    #[test]
    fn unschedulable_flushed_after_five_minutes() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        let p = pod("p", 0);
        q.add(p.clone(), t0);
        q.pop(t0);
        q.done_unschedulable(&p, CPU, t0);
        assert!(q.pop(t0 + Duration::from_secs(299)).is_none());
        assert_eq!(q.next_wakeup(), Some(t0 + MAX_UNSCHEDULABLE_DURATION));
        assert_eq!(name(q.pop(t0 + Duration::from_secs(300))), "p");
    }

    #[test]
    fn updates_and_deletes() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        let p = pod("p", 0);
        q.add(p.clone(), t0);
        q.pop(t0);
        q.done_unschedulable(&p, CPU, t0);
        // status-only update keeps it parked
        let mut status_only = p.clone();
        status_only.status = Some(Default::default());
        q.update(status_only, t0 + Duration::from_secs(5));
        assert_eq!(q.counts(), (0, 0, 1, 0));
        // a spec change (e.g. lowered requests) requeues it
        let mut smaller = p.clone();
        smaller.spec.as_mut().unwrap().priority = Some(3);
        q.update(smaller, t0 + Duration::from_secs(5));
        assert_eq!(q.counts(), (1, 0, 0, 0));
        q.delete(&p);
        assert!(q.is_empty());
        // errors back off; a success forgets the pod
        q.add(p.clone(), t0);
        q.pop(t0);
        q.done_error(&p, t0);
        assert_eq!(q.counts(), (0, 1, 0, 0));
        assert_eq!(name(q.pop(t0 + Duration::from_secs(2))), "p");
        q.done_scheduled(&p);
        assert!(q.is_empty());
    }

    #[test]
    fn recreated_pod_replaces_old_uid() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("p", 0), t0);
        q.pop(t0);
        let mut again = pod("p", 0);
        again.metadata.uid = Some("new".into());
        q.add(again, t0);
        assert_eq!(q.counts(), (1, 0, 0, 0));
        assert_eq!(
            q.pop(t0).and_then(|p| p.metadata.uid.clone()).as_deref(),
            Some("new")
        );
    }

    #[test]
    fn masks_from_fit_errors() {
        let mut e = FitError {
            num_all_nodes: 3,
            ..Default::default()
        };
        e.record("n1", vec![Reason::NodeAffinity]);
        assert_eq!(rejection_mask(&e), R_NODE);
        e.record(
            "n2",
            vec![Reason::Insufficient {
                resource: "cpu".into(),
                unresolvable: false,
            }],
        );
        assert_eq!(rejection_mask(&e), R_NODE | R_RESOURCES);
    }
}
