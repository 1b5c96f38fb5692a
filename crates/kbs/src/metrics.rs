//! Prometheus metrics (`GET /metrics`).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TeeLabel {
    tee: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttestLabels {
    tee: String,
    /// `affirming|warning|contraindicated|none` on success, else the error kind.
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdminLabels {
    operation: String,
    result: String,
}

pub struct Metrics {
    registry: Registry,
    auth: Family<TeeLabel, Counter>,
    attest: Family<AttestLabels, Counter>,
    resource: Family<ResultLabel, Counter>,
    admin: Family<AdminLabels, Counter>,
    change_notifications: Gauge,
    listener: ward_listen::ListenerMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ward_kbs");
        let auth = Family::<TeeLabel, Counter>::default();
        let attest = Family::<AttestLabels, Counter>::default();
        let resource = Family::<ResultLabel, Counter>::default();
        let admin = Family::<AdminLabels, Counter>::default();
        registry.register(
            "auth_requests",
            "Challenges issued (POST /auth)",
            auth.clone(),
        );
        registry.register(
            "attestations",
            "Attestation outcomes (POST /attest)",
            attest.clone(),
        );
        registry.register(
            "resource_requests",
            "Resource request outcomes",
            resource.clone(),
        );
        registry.register("admin_requests", "Admin API requests", admin.clone());
        let change_notifications = Gauge::default();
        registry.register(
            "store_change_notifications",
            "1 while the store receives change notifications from its database (PostgreSQL LISTEN), 0 while it polls for changes",
            change_notifications.clone(),
        );
        let listener = ward_listen::ListenerMetrics::default();
        listener.register(&mut registry);
        Self {
            registry,
            auth,
            attest,
            resource,
            admin,
            change_notifications,
            listener,
        }
    }

    /// The connection metrics, for the listener that serves this state.
    pub fn listener(&self) -> &ward_listen::ListenerMetrics {
        &self.listener
    }

    pub fn auth(&self, tee: &str) {
        self.auth.get_or_create(&TeeLabel { tee: tee.into() }).inc();
    }

    pub fn attest(&self, tee: &str, result: Result<&str, &str>) {
        let result = match result {
            Ok(s) | Err(s) => s.to_string(),
        };
        self.attest
            .get_or_create(&AttestLabels {
                tee: tee.into(),
                result,
            })
            .inc();
    }

    pub fn resource(&self, result: &str) {
        self.resource
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn admin(&self, operation: &str, result: &str) {
        self.admin
            .get_or_create(&AdminLabels {
                operation: operation.into(),
                result: result.into(),
            })
            .inc();
    }

    /// How the store learns of other replicas' changes, as of now.
    pub fn change_feed(&self, feed: ward_store::ChangeFeed) {
        self.change_notifications
            .set(i64::from(feed == ward_store::ChangeFeed::Notified));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
