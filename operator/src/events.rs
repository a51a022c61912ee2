//! Events on MessageQueues (events.k8s.io/v1), repeats folded into series.
//!
//! Why not kube-runtime's `Recorder`: it keeps every Event it published, whole, for six minutes
//! and prunes only when the next one is published, so after a burst (five "Created" Events per
//! new MessageQueue) an idle operator held them for good: 5.6 MiB for 500 MessageQueues in the
//! heap profile of docs/benchmarks.md. This writer keeps only what a repeat needs (the Event's
//! name, the count, when it was last seen: some 60 bytes per series) and prunes on a timer.
//!
//! The series bookkeeping (`Series`) is pure and unit-tested; `EventWriter` does the I/O.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

/// How long a series stays open: a repeat seen within this time of the last one counts on the
/// same Event, a later one starts a new Event (the API server keeps Events for an hour).
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// Normal or Warning, as `kubectl get events` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something the operator did or saw that needs nobody.
    Normal,
    /// Something a person may have to act on.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What one Event says about its object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// Why (CamelCase, at most 128 characters).
    pub reason: String,
    /// What the operator did (at most 128 characters).
    pub action: String,
    /// For a person (at most 1 KiB).
    pub note: String,
}

/// What `Series::observe` decided for an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The first of its series: create an Event of this name.
    First(String),
    /// A repeat within `SERIES_TTL`: set the series count of the Event of this name.
    Repeat {
        /// The Event created for the first of the series.
        name: String,
        /// How many times it has been seen, this one included (2 for the first repeat).
        count: i32,
    },
}

struct Entry {
    name: Box<str>,
    count: i32,
    last_seen: Instant,
}

/// The open series, by a digest of (object, type, reason, action). A digest collision (2^-64
/// per pair) would only count one Event's repeat on another's series.
#[derive(Default)]
pub struct Series {
    open: HashMap<u64, Entry>,
}

impl Series {
    /// Records one Event about `object` at `now`; `fresh_name` names it if it starts a series.
    pub fn observe(
        &mut self,
        object: &ObjectReference,
        note: &Note,
        now: Instant,
        fresh_name: impl FnOnce() -> String,
    ) -> Observed {
        let key = key_of(object, note);
        match self.open.get_mut(&key) {
            Some(entry) if now.saturating_duration_since(entry.last_seen) < SERIES_TTL => {
                entry.count = entry.count.saturating_add(1);
                entry.last_seen = now;
                Observed::Repeat {
                    name: entry.name.to_string(),
                    count: entry.count,
                }
            }
            _ => {
                let name = fresh_name();
                self.open.insert(
                    key,
                    Entry {
                        name: name.clone().into_boxed_str(),
                        count: 1,
                        last_seen: now,
                    },
                );
                Observed::First(name)
            }
        }
    }

    /// Forgets the series not seen for `SERIES_TTL` before `now`, and gives their memory back.
    pub fn prune(&mut self, now: Instant) {
        self.open
            .retain(|_, e| now.saturating_duration_since(e.last_seen) < SERIES_TTL);
        self.open.shrink_to_fit();
    }

    /// How many series are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no series is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

fn key_of(object: &ObjectReference, note: &Note) -> u64 {
    let mut h = DefaultHasher::new();
    (
        &object.namespace,
        &object.name,
        &object.uid,
        &object.kind,
        note.type_,
        &note.reason,
        &note.action,
    )
        .hash(&mut h);
    h.finish()
}

/// The Event that starts a series.
pub fn first_event(
    object: &ObjectReference,
    note: &Note,
    name: &str,
    controller: &str,
    instance: &str,
    now: Timestamp,
) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: object.namespace.clone(),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(note.type_.as_str().to_string()),
        reason: Some(note.reason.clone()),
        action: Some(note.action.clone()),
        note: Some(note.note.clone()),
        regarding: Some(object.clone()),
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(instance.to_string()),
        ..Default::default()
    }
}

/// Writes Events through the API server, folding repeats into series.
pub struct EventWriter {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
}

impl EventWriter {
    /// A writer reporting as `controller` (e.g. "sluice-operator"), replica `instance`.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        EventWriter {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            series: Mutex::new(Series::default()),
        }
    }

    /// Forgets the series that ended (call it now and then: nothing else prunes them).
    pub fn prune(&self) {
        if let Ok(mut series) = self.series.lock() {
            series.prune(Instant::now());
        }
    }

    /// Creates the Event, or counts a repeat on the Event of its series.
    pub async fn publish(&self, object: &ObjectReference, note: &Note) -> kube::Result<()> {
        let now = Timestamp::now();
        let fresh_name = || {
            format!(
                "{}.{:x}",
                object.name.as_deref().unwrap_or(&self.controller),
                now.as_nanosecond()
            )
        };
        // Decided under the lock, before the request: a repeat published while its first
        // Event is still being created counts on that Event instead of starting another.
        let observed = match self.series.lock() {
            Ok(mut series) => series.observe(object, note, Instant::now(), fresh_name),
            Err(_) => Observed::First(fresh_name()),
        };
        let ns = object.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        match observed {
            Observed::First(name) => {
                let event = first_event(object, note, &name, &self.controller, &self.instance, now);
                events.create(&PostParams::default(), &event).await?;
            }
            Observed::Repeat { name, count } => {
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                };
                let patch = serde_json::json!({ "series": series });
                let patch = Patch::Merge(&patch);
                let params = PatchParams::default();
                match events.patch(&name, &params, &patch).await {
                    // The first Event expired (the API server's TTL) or was deleted, or its
                    // create has not landed yet: this repeat is written whole.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        let mut event =
                            first_event(object, note, &name, &self.controller, &self.instance, now);
                        event.series = Some(series);
                        match events.create(&PostParams::default(), &event).await {
                            // the first create landed in between: count on it after all
                            Err(kube::Error::Api(e)) if e.code == 409 => {
                                events.patch(&name, &params, &patch).await?;
                            }
                            other => {
                                other?;
                            }
                        }
                    }
                    other => {
                        other?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("sluice.dev/v1alpha1".into()),
            kind: Some("MessageQueue".into()),
            name: Some(name.into()),
            namespace: Some("apps".into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    fn note(reason: &str, action: &str) -> Note {
        Note {
            type_: EventType::Normal,
            reason: reason.into(),
            action: action.into(),
            note: "StatefulSet orders created".into(),
        }
    }

    #[test]
    fn a_repeat_within_the_ttl_counts_on_the_first_events_series() {
        let mut series = Series::default();
        let t0 = Instant::now();
        let (o, n) = (object("orders", "u1"), note("Created", "Create-1"));
        assert_eq!(
            series.observe(&o, &n, t0, || "orders.1".into()),
            Observed::First("orders.1".into())
        );
        let second = series.observe(&o, &n, t0 + Duration::from_secs(10), || "orders.2".into());
        assert_eq!(
            second,
            Observed::Repeat {
                name: "orders.1".into(),
                count: 2
            }
        );
        // the series stays open from its last repeat, not from its first Event
        let third = series.observe(&o, &n, t0 + SERIES_TTL + Duration::from_secs(5), || {
            "orders.3".into()
        });
        assert_eq!(
            third,
            Observed::Repeat {
                name: "orders.1".into(),
                count: 3
            }
        );
    }

    #[test]
    fn a_repeat_after_the_ttl_starts_a_new_event() {
        let mut series = Series::default();
        let t0 = Instant::now();
        let (o, n) = (object("orders", "u1"), note("Created", "Create-1"));
        series.observe(&o, &n, t0, || "orders.1".into());
        assert_eq!(
            series.observe(&o, &n, t0 + SERIES_TTL, || "orders.2".into()),
            Observed::First("orders.2".into())
        );
    }

    #[test]
    fn another_reason_action_type_or_object_is_another_series() {
        let mut series = Series::default();
        let t0 = Instant::now();
        let (o, n) = (object("orders", "u1"), note("Created", "Create-1"));
        series.observe(&o, &n, t0, || "a".into());
        let mut warning = n.clone();
        warning.type_ = EventType::Warning;
        let others = [
            (o.clone(), note("Updated", "Create-1")),
            (o.clone(), note("Created", "Create-2")),
            (o.clone(), warning),
            (object("payments", "u2"), n.clone()),
            // the same name recreated is another object
            (object("orders", "u3"), n.clone()),
        ];
        for (i, (o, n)) in others.iter().enumerate() {
            assert_eq!(
                series.observe(o, n, t0, || format!("e{i}")),
                Observed::First(format!("e{i}")),
                "{o:?} {n:?}"
            );
        }
        assert_eq!(series.len(), 6);
    }

    #[test]
    fn prune_forgets_only_the_series_that_ended() {
        let mut series = Series::default();
        let t0 = Instant::now();
        let n = note("Created", "Create-1");
        series.observe(&object("old", "u1"), &n, t0, || "old.1".into());
        series.observe(
            &object("new", "u2"),
            &n,
            t0 + Duration::from_secs(300),
            || "new.1".into(),
        );
        series.prune(t0 + SERIES_TTL);
        assert_eq!(series.len(), 1);
        assert_eq!(
            series.observe(&object("new", "u2"), &n, t0 + SERIES_TTL, || "x".into()),
            Observed::Repeat {
                name: "new.1".into(),
                count: 2
            }
        );
        series.prune(t0 + SERIES_TTL * 3);
        assert!(series.is_empty());
    }

    #[test]
    fn the_first_event_names_its_object_reporter_and_type() {
        let o = object("orders", "u1");
        let mut n = note("Created", "Create-1");
        n.type_ = EventType::Warning;
        let e = first_event(
            &o,
            &n,
            "orders.1",
            "sluice-operator",
            "op-0",
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(e.metadata.name.as_deref(), Some("orders.1"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("Created"));
        assert_eq!(e.action.as_deref(), Some("Create-1"));
        assert_eq!(e.regarding.as_ref(), Some(&o));
        assert_eq!(e.reporting_controller.as_deref(), Some("sluice-operator"));
        assert_eq!(e.reporting_instance.as_deref(), Some("op-0"));
        assert!(e.series.is_none() && e.event_time.is_some());
    }
}
