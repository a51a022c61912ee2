//! Prometheus metrics of the operator (`/metrics`), prefixed `sluice_operator_`.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of the errors counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `Error::metric_label()`.
    pub reason: String,
}

/// Labels of the child writes counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChildWriteLabels {
    /// The child's kind (`StatefulSet`, `Secret`, ...).
    pub kind: String,
    /// `applied` (a server-side apply was sent) or `skipped` (the watch cache showed the child
    /// as the operator last applied it).
    pub outcome: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    in_flight: Gauge<i64, AtomicI64>,
    leader: Gauge<i64, AtomicI64>,
    child_writes: Family<ChildWriteLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        let child_writes = Family::<ChildWriteLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now (the controller's work in progress)",
            in_flight.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        registry.register(
            "child_writes",
            "Children a pass wanted as they are: applied, or skipped because the cache matched",
            child_writes.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            in_flight,
            leader,
            child_writes,
        }
    }
}

impl Metrics {
    /// A reconcile began.
    pub fn reconcile_started(&self) {
        self.reconciles.inc();
        self.in_flight.inc();
    }

    /// A reconcile ended after `elapsed`.
    pub fn reconcile_finished(&self, elapsed: Duration) {
        self.in_flight.dec();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// A reconcile failed with `reason` (`Error::metric_label`).
    pub fn reconcile_failed(&self, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A pass applied a child of `kind` (`applied: true`) or found it current in the cache.
    pub fn child_write(&self, kind: &str, applied: bool) {
        self.child_writes
            .get_or_create(&ChildWriteLabels {
                kind: kind.to_string(),
                outcome: if applied { "applied" } else { "skipped" }.to_string(),
            })
            .inc();
    }

    /// Leadership changed.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_has_reconciles_errors_and_histogram() {
        let m = Metrics::default();
        m.reconcile_started();
        m.reconcile_finished(Duration::from_millis(12));
        m.reconcile_failed("kube_api");
        m.set_leader(true);
        m.child_write("StatefulSet", false);
        let text = m.encode();
        assert!(
            text.contains("sluice_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("sluice_operator_reconcile_errors_total{reason=\"kube_api\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sluice_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("sluice_operator_reconciles_in_flight 0"),
            "{text}"
        );
        assert!(text.contains("sluice_operator_leader 1"), "{text}");
        assert!(
            text.contains(
                "sluice_operator_child_writes_total{kind=\"StatefulSet\",outcome=\"skipped\"} 1"
            ),
            "{text}"
        );
    }
}
