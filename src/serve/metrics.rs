//! What `/metrics` exports, through the `prometheus-client` crate (the Prometheus
//! project's Rust client). Names are stable: dashboards and alerts depend on them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByPolicy {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByDirection {
    pub policy: String,
    pub direction: String,
    /// "true" when the decision was not sent (global or policy `dry_run`).
    pub dry_run: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByCall {
    pub actuator: String,
    pub call: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByCallResult {
    pub actuator: String,
    pub call: String,
    /// `ok`, or the failure's kind (`timeout`, `trap`, `unavailable`, ...).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BySource {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByMetric {
    pub policy: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByResult {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByFile {
    pub file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByInstance {
    pub id: String,
    pub coordination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByActuator {
    pub actuator: String,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    pub registry: Registry,
    pub ticks: Family<ByPolicy, Counter>,
    pub ticks_skipped: Family<ByPolicy, Counter>,
    pub tick_errors: Family<ByPolicy, Counter>,
    pub decisions: Family<ByDirection, Counter>,
    pub actuator_calls: Family<ByCallResult, Counter>,
    pub actuator_seconds: Family<ByCall, Histogram, fn() -> Histogram>,
    pub replicas_current: Family<ByPolicy, Gauge>,
    pub replicas_desired: Family<ByPolicy, Gauge>,
    pub override_active: Family<ByPolicy, Gauge>,
    pub fetches: Family<BySource, Counter>,
    pub fetch_errors: Family<BySource, Counter>,
    pub missing_samples: Family<ByMetric, Counter>,
    pub reloads: Family<ByResult, Counter>,
    pub plugin_reloads: Family<ByResult, Counter>,
    pub file_errors: Family<ByFile, Gauge>,
    pub plugin_errors: Family<ByActuator, Gauge>,
    pub policies: Gauge,
    pub state_writes: Family<ByResult, Counter>,
    pub engine_seconds: Histogram,
    pub shadow_desired: Family<ByPolicy, Gauge>,
    pub shadow_other_desired: Family<ByPolicy, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub shadow_divergence: Family<ByPolicy, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// 1 while this instance leads (ticks and actuates), else 0; set at each scrape.
    pub leader: Family<ByInstance, Gauge>,
}

/// One policy's own series, as handles (each is a shared counter or gauge).
pub struct PolicySeries {
    pub ticks: Counter,
    pub replicas_current: Gauge,
    pub replicas_desired: Gauge,
    pub override_active: Gauge,
}

impl Metrics {
    /// The series of policy `name`, created if needed.
    pub fn series(&self, name: &str) -> PolicySeries {
        let p = ByPolicy {
            policy: name.to_string(),
        };
        PolicySeries {
            ticks: self.ticks.get_or_create(&p).clone(),
            replicas_current: self.replicas_current.get_or_create(&p).clone(),
            replicas_desired: self.replicas_desired.get_or_create(&p).clone(),
            override_active: self.override_active.get_or_create(&p).clone(),
        }
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("policyctl");
        let m = Metrics {
            ticks: Family::default(),
            ticks_skipped: Family::default(),
            tick_errors: Family::default(),
            decisions: Family::default(),
            actuator_calls: Family::default(),
            actuator_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            replicas_current: Family::default(),
            replicas_desired: Family::default(),
            override_active: Family::default(),
            fetches: Family::default(),
            fetch_errors: Family::default(),
            missing_samples: Family::default(),
            reloads: Family::default(),
            plugin_reloads: Family::default(),
            file_errors: Family::default(),
            plugin_errors: Family::default(),
            policies: Gauge::default(),
            leader: Family::default(),
            state_writes: Family::default(),
            engine_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
            shadow_desired: Family::default(),
            shadow_other_desired: Family::default(),
            shadow_divergence: Family::default(),
            registry: Registry::default(),
        };
        registry.register("ticks", "Policy evaluations", m.ticks.clone());
        registry.register(
            "ticks_skipped",
            "Evaluations skipped because the previous one of the policy was still running",
            m.ticks_skipped.clone(),
        );
        registry.register(
            "tick_errors",
            "Evaluations that could not decide (the current replica count was unknown)",
            m.tick_errors.clone(),
        );
        registry.register(
            "decisions",
            "Decisions by policy and direction",
            m.decisions.clone(),
        );
        registry.register(
            "actuator_calls",
            "Actuator plugin calls by result",
            m.actuator_calls.clone(),
        );
        registry.register(
            "actuator_call_seconds",
            "Actuator plugin call latency, retries included",
            m.actuator_seconds.clone(),
        );
        registry.register(
            "replicas_current",
            "The replica count each policy saw at its last tick",
            m.replicas_current.clone(),
        );
        registry.register(
            "replicas_desired",
            "The replica count each policy decided at its last tick",
            m.replicas_desired.clone(),
        );
        registry.register(
            "override_active",
            "1 while a manual override holds the policy",
            m.override_active.clone(),
        );
        registry.register(
            "metric_fetches",
            "Queries sent to each source",
            m.fetches.clone(),
        );
        registry.register(
            "metric_fetch_errors",
            "Queries that gave no usable number (error, timeout, no series, several series, NaN)",
            m.fetch_errors.clone(),
        );
        registry.register(
            "missing_samples",
            "Ticks at which a policy's metric was missing",
            m.missing_samples.clone(),
        );
        registry.register(
            "reloads",
            "Policy reloads: success, or failure when some file did not pass check",
            m.reloads.clone(),
        );
        registry.register(
            "plugin_reloads",
            "Plugin reloads after the plugin file changed",
            m.plugin_reloads.clone(),
        );
        registry.register(
            "policy_file_errors",
            "1 for each policy file that fails check (its last good version keeps running)",
            m.file_errors.clone(),
        );
        registry.register(
            "plugin_errors",
            "1 for each actuator whose changed plugin failed to load (the old one keeps running)",
            m.plugin_errors.clone(),
        );
        registry.register("policies", "Policies loaded", m.policies.clone());
        registry.register(
            "leader",
            "1 while this instance leads: ticks and calls actuators (docs/ha.md)",
            m.leader.clone(),
        );
        registry.register("state_writes", "State file writes", m.state_writes.clone());
        registry.register(
            "engine_seconds",
            "Time in the decision engine per policy tick",
            m.engine_seconds.clone(),
        );
        registry.register(
            "shadow_desired",
            "The count a shadowed policy wants (it runs as dry-run beside another autoscaler)",
            m.shadow_desired.clone(),
        );
        registry.register(
            "shadow_other_desired",
            "The count the other autoscaler wants, from the shadow query",
            m.shadow_other_desired.clone(),
        );
        registry.register(
            "shadow_divergence",
            "policyctl_shadow_desired minus policyctl_shadow_other_desired",
            m.shadow_divergence.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Forget a policy's series (it was removed).
    pub fn forget(&self, policy: &str) {
        let p = ByPolicy {
            policy: policy.to_string(),
        };
        self.ticks.remove(&p);
        self.replicas_current.remove(&p);
        self.replicas_desired.remove(&p);
        self.override_active.remove(&p);
        self.shadow_desired.remove(&p);
        self.shadow_other_desired.remove(&p);
        self.shadow_divergence.remove(&p);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
