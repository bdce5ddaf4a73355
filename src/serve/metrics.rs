//! What `/metrics` exports, through the `prometheus-client` crate (the Prometheus
//! project's Rust client). Names are stable: dashboards and alerts depend on them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
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
    /// `ticks`, `replicas_current`, `replicas_desired`, `override_active`.
    pub policy_series: Arc<PolicySeriesSet>,
    pub ticks_skipped: Family<ByPolicy, Counter>,
    pub tick_errors: Family<ByPolicy, Counter>,
    pub decisions: Family<ByDirection, Counter>,
    pub actuator_calls: Family<ByCallResult, Counter>,
    pub actuator_seconds: Family<ByCall, Histogram, fn() -> Histogram>,
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

/// One policy's own series (`ticks`, `replicas_current`, `replicas_desired`,
/// `override_active`): four numbers in one allocation, which the slot updates and each
/// scrape reads. With 100,000 policies, four `Family`s cost about 36 MB (a hash-table
/// entry, a label string and a shared counter per series); this is one 48-byte
/// allocation per policy, plus its entry in [`PolicySeriesSet`].
#[derive(Debug, Default)]
pub struct PolicySeries {
    pub ticks: AtomicU64,
    pub replicas_current: AtomicI64,
    pub replicas_desired: AtomicI64,
    pub override_active: AtomicI64,
}

impl PolicySeries {
    pub fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set(&self, current: u32, desired: u32, overridden: bool) {
        self.replicas_current
            .store(i64::from(current), Ordering::Relaxed);
        self.replicas_desired
            .store(i64::from(desired), Ordering::Relaxed);
        self.override_active
            .store(i64::from(overridden), Ordering::Relaxed);
    }
}

/// Every policy's series, by name, encoded at each scrape (a `Collector`), as the
/// registry encodes a family: help texts end with a full stop (the registry adds it),
/// a counter's samples get `_total`, and no lines while there is no policy.
#[derive(Debug, Default)]
pub struct PolicySeriesSet {
    by_name: RwLock<BTreeMap<Arc<str>, Arc<PolicySeries>>>,
}

impl PolicySeriesSet {
    fn series(&self, name: &str) -> Arc<PolicySeries> {
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        map.entry(Arc::from(name)).or_default().clone()
    }

    fn forget(&self, name: &str) {
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        map.remove(name);
    }
}

impl Collector for PolicySeriesSet {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        // As the registry does for an empty family: no series, no lines.
        if map.is_empty() {
            return Ok(());
        }
        let mut family =
            |name: &str,
             help: &str,
             kind: MetricType,
             sample: fn(&PolicySeries, MetricEncoder<'_>) -> std::fmt::Result| {
                let mut descriptor = encoder.encode_descriptor(name, help, None, kind)?;
                for (policy, series) in map.iter() {
                    let labels = [("policy", &**policy)];
                    sample(series, descriptor.encode_family(&labels)?)?;
                }
                Ok::<(), std::fmt::Error>(())
            };
        fn gauge(v: &AtomicI64, e: MetricEncoder<'_>) -> std::fmt::Result {
            ConstGauge::new(v.load(Ordering::Relaxed)).encode(e)
        }
        family(
            "ticks",
            "Policy evaluations.",
            MetricType::Counter,
            |s, e| ConstCounter::new(s.ticks.load(Ordering::Relaxed)).encode(e),
        )?;
        family(
            "replicas_current",
            "The replica count each policy saw at its last tick.",
            MetricType::Gauge,
            |s, e| gauge(&s.replicas_current, e),
        )?;
        family(
            "replicas_desired",
            "The replica count each policy decided at its last tick.",
            MetricType::Gauge,
            |s, e| gauge(&s.replicas_desired, e),
        )?;
        family(
            "override_active",
            "1 while a manual override holds the policy.",
            MetricType::Gauge,
            |s, e| gauge(&s.override_active, e),
        )
    }
}

impl Metrics {
    /// The series of policy `name`, created if needed.
    pub fn series(&self, name: &str) -> Arc<PolicySeries> {
        self.policy_series.series(name)
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("policyctl");
        let m = Metrics {
            policy_series: Arc::default(),
            ticks_skipped: Family::default(),
            tick_errors: Family::default(),
            decisions: Family::default(),
            actuator_calls: Family::default(),
            actuator_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
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
        registry.register_collector(Box::new(m.policy_series.clone()));
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
        self.policy_series.forget(policy);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of each family named in `names`, in the order rendered.
    fn family_lines(text: &str, names: &[&str]) -> Vec<Vec<String>> {
        names
            .iter()
            .map(|n| {
                let prefix = format!("policyctl_{n}");
                text.lines()
                    .filter(|l| {
                        let l = l
                            .trim_start_matches("# HELP ")
                            .trim_start_matches("# TYPE ");
                        l.starts_with(&format!("{prefix} "))
                            || l.starts_with(&format!("{prefix}{{"))
                            || l.starts_with(&format!("{prefix}_total{{"))
                    })
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_policy_series_render_as_the_families_they_replace() {
        let metrics = Metrics::new();
        // The reference: the same series as prometheus-client families.
        let mut registry = Registry::with_prefix("policyctl");
        let ticks = Family::<ByPolicy, Counter>::default();
        let gauges: [Family<ByPolicy, Gauge>; 3] = Default::default();
        registry.register("ticks", "Policy evaluations", ticks.clone());
        for (name, family) in ["replicas_current", "replicas_desired", "override_active"]
            .iter()
            .zip(&gauges)
        {
            let help = match *name {
                "replicas_current" => "The replica count each policy saw at its last tick",
                "replicas_desired" => "The replica count each policy decided at its last tick",
                _ => "1 while a manual override holds the policy",
            };
            registry.register(*name, help, family.clone());
        }
        let names = [
            "ticks",
            "replicas_current",
            "replicas_desired",
            "override_active",
        ];
        let render = |r: &Registry| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, r).unwrap_or_default();
            out
        };
        // No policy: no lines at all, as for an empty family.
        assert_eq!(
            family_lines(&metrics.render(), &names),
            family_lines(&render(&registry), &names)
        );
        assert!(
            family_lines(&metrics.render(), &names)
                .iter()
                .all(Vec::is_empty)
        );

        for (i, name) in ["web", "queue \"q\"", "a\\b"].iter().enumerate() {
            let series = metrics.series(name);
            let label = ByPolicy {
                policy: name.to_string(),
            };
            let n = i as u32 + 1;
            for _ in 0..n {
                series.tick();
                ticks.get_or_create(&label).inc();
            }
            series.set(n * 3, n * 4, n % 2 == 0);
            gauges[0].get_or_create(&label).set(i64::from(n * 3));
            gauges[1].get_or_create(&label).set(i64::from(n * 4));
            gauges[2].get_or_create(&label).set(i64::from(n % 2 == 0));
        }
        let sorted = |mut f: Vec<Vec<String>>| {
            f.iter_mut().for_each(|lines| lines.sort());
            f
        };
        let ours = sorted(family_lines(&metrics.render(), &names));
        assert_eq!(ours, sorted(family_lines(&render(&registry), &names)));
        assert!(
            ours[0].contains(&"policyctl_ticks_total{policy=\"queue \\\"q\\\"\"} 2".to_string())
        );

        // A removed policy's series go.
        metrics.forget("web");
        let text = metrics.render();
        assert!(!text.contains("policy=\"web\""), "{text}");
        assert!(
            text.contains("policyctl_replicas_desired{policy=\"a\\\\b\"} 12"),
            "{text}"
        );
    }
}
