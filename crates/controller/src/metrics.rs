//! Prometheus metrics (prometheus-client), served on `/metrics`.

use std::sync::Arc;

use edgetrain_azure::arm::RequestMetrics;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub reason: String,
}

/// Every metric the controller exports. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Family<KindLabel, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabel, Histogram>,
    pub time_to_ready: Family<KindLabel, Histogram>,
    /// Objects this process holds Stalled (waiting for a spec or Secret change), by kind.
    pub stalled: Family<KindLabel, Gauge>,
    /// Handed to every Azure client so their requests are counted by host/verb/status.
    pub azure: RequestMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("edgetrain");
        let reconciles = Family::<KindLabel, Counter>::default();
        registry.register("reconciles", "Reconciliations started", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error reason",
            errors.clone(),
        );
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            duration.clone(),
        );
        let time_to_ready = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0])
        });
        registry.register(
            "time_to_ready_seconds",
            "From object creation to its first Ready=True seen by this process",
            time_to_ready.clone(),
        );
        let stalled = Family::<KindLabel, Gauge>::default();
        registry.register(
            "stalled_resources",
            "Objects stalled until their spec or a referenced Secret changes",
            stalled.clone(),
        );
        let azure = RequestMetrics::default();
        azure.register(registry.sub_registry_with_prefix("azure"));
        Self {
            registry: Arc::new(registry),
            reconciles,
            errors,
            duration,
            time_to_ready,
            stalled,
            azure,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn kind(kind: &str) -> KindLabel {
        KindLabel { kind: kind.into() }
    }

    pub fn error(&self, kind: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_label() {
        let m = Metrics::default();
        m.reconciles
            .get_or_create(&Metrics::kind("EdgeComputeTarget"))
            .inc();
        m.error("EdgeComputeTarget", "secret_not_found");
        m.azure.record("127.0.0.1", "GET", Some(200));
        m.stalled
            .get_or_create(&Metrics::kind("TrainingRun"))
            .set(2);
        let text = m.render();
        assert!(
            text.contains("edgetrain_reconciles_total{kind=\"EdgeComputeTarget\"} 1"),
            "{text}"
        );
        assert!(text.contains("reason=\"secret_not_found\""), "{text}");
        assert!(
            text.contains("edgetrain_stalled_resources{kind=\"TrainingRun\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "edgetrain_azure_requests_total{host=\"127.0.0.1\",verb=\"GET\",status_class=\"2xx\"} 1"
            ),
            "{text}"
        );
    }
}
