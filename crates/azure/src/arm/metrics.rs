//! Request counters by endpoint host, verb and status class, in prometheus-client types.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

/// Labels of one request counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub host: String,
    pub verb: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `transport_error` when no response came back; `429` is
    /// its own class (not in `4xx`) so throttling can be alerted on.
    pub status_class: String,
}

/// Status class label for an HTTP status, or for no response.
pub fn status_class(status: Option<u16>) -> String {
    match status {
        Some(429) => "429".into(),
        Some(s) => format!("{}xx", s / 100),
        None => "transport_error".into(),
    }
}

/// Counters of every HTTP attempt the Azure clients make (retries count separately).
#[derive(Debug, Clone, Default)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
}

impl RequestMetrics {
    /// Register under `prefix` (the lead picks the registry; e.g. `edgetrain_azure`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "HTTP requests to Azure by endpoint host, verb and status class",
            self.requests.clone(),
        );
    }

    pub fn record(&self, host: &str, verb: &str, status: Option<u16>) {
        self.requests
            .get_or_create(&RequestLabels {
                host: host.to_string(),
                verb: verb.to_string(),
                status_class: status_class(status),
            })
            .inc();
    }

    /// Current count for one label set (for tests and ad-hoc reads).
    pub fn get(&self, host: &str, verb: &str, status_class: &str) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                host: host.to_string(),
                verb: verb.to_string(),
                status_class: status_class.to_string(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_labels_and_encodes() {
        let m = RequestMetrics::default();
        m.record("management.local", "GET", Some(200));
        m.record("management.local", "GET", Some(204));
        m.record("management.local", "PUT", Some(429));
        m.record("management.local", "PUT", None);
        assert_eq!(m.get("management.local", "GET", "2xx"), 2);
        m.record("management.local", "PUT", Some(409));
        assert_eq!(m.get("management.local", "PUT", "429"), 1);
        assert_eq!(m.get("management.local", "PUT", "4xx"), 1);
        assert_eq!(m.get("management.local", "PUT", "transport_error"), 1);
        assert_eq!(m.get("other", "GET", "2xx"), 0);
        let mut reg = Registry::with_prefix("edgetrain_azure");
        m.register(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains(r#"edgetrain_azure_requests_total{host="management.local",verb="GET",status_class="2xx"} 2"#),
            "{out}"
        );
    }
}
