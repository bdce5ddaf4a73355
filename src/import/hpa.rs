//! HorizontalPodAutoscaler (`autoscaling/v1`, `v2beta2`, `v2`) → `.scale`.
//!
//! HPA's algorithm (kubernetes.io, "Horizontal Pod Autoscaling"): per metric
//! `ceil(current × value / target)` (a Utilization, a Pods AverageValue, an Object or
//! External Value) or `ceil(value / target)` (an Object or External AverageValue), within
//! a 10% tolerance; the highest over the metrics; then `behavior`.

use super::adapter::{Matchers, NameMatch};
use super::yaml::{Loc, Node};
use super::{Convert, HPA_PERIOD, Imported, Pending, Target, duration};

impl Convert<'_> {
    pub(super) fn hpa(mut self, api: &str) -> Imported {
        let Some(spec) = self.obj.get("spec") else {
            self.partial("no `spec`".into(), self.obj.at);
            return self.finish();
        };
        let mut known = vec!["scaleTargetRef", "minReplicas", "maxReplicas"];
        if api == "autoscaling/v1" {
            known.push("targetCPUUtilizationPercentage");
        } else {
            known.extend(["metrics", "behavior"]);
        }
        self.known(spec, "spec", &known);
        self.scale_target(spec.get("scaleTargetRef"), "Deployment");
        let min = self
            .count(spec.get("minReplicas"), "minReplicas")
            .unwrap_or(1);
        let max = match self.count(spec.get("maxReplicas"), "maxReplicas") {
            Some(max) => max,
            None => {
                self.partial("no `spec.maxReplicas` (HPA requires it)".into(), spec.at);
                min
            }
        };
        self.line(format!("replicas {min}..{max}"));
        self.comment(
            "HPA's sync period (kube-controller-manager --horizontal-pod-autoscaler-sync-period)",
        );
        self.line(format!("every {HPA_PERIOD}"));

        if api == "autoscaling/v1" {
            let percent = self
                .count(
                    spec.get("targetCPUUtilizationPercentage"),
                    "targetCPUUtilizationPercentage",
                )
                .unwrap_or(80);
            self.resource(
                "cpu",
                None,
                Target::Utilization(percent.to_string()),
                spec.at,
            );
        } else {
            match spec.get("metrics") {
                Some(metrics) if !metrics.items().is_empty() => {
                    for metric in metrics.items() {
                        self.hpa_metric(metric);
                    }
                }
                _ => {
                    self.comment("no `metrics`: HPA's default, 80% average CPU utilisation");
                    self.resource("cpu", None, Target::Utilization("80".into()), spec.at);
                }
            }
            match spec.get("behavior") {
                Some(behavior) => self.behavior(behavior, "spec.behavior"),
                None => self.settings.push(
                    "# no `behavior`: HPA's defaults, which are policyctl's own (stabilize down 5m; limit up 4 per 15s or 100% per 15s)"
                        .into(),
                ),
            }
        }
        self.finish()
    }

    /// A `target` block: `{type, averageUtilization | averageValue | value}`.
    fn target(&mut self, node: Option<&Node>, at: Loc) -> Option<Target> {
        let Some(node) = node else {
            self.partial("a metric without `target`".into(), at);
            return None;
        };
        self.known(
            node,
            "target",
            &["type", "averageUtilization", "averageValue", "value"],
        );
        let ty = node.get("type").and_then(Node::scalar).unwrap_or_default();
        match ty.as_str() {
            "Utilization" => match self.count(node.get("averageUtilization"), "averageUtilization")
            {
                Some(p) => Some(Target::Utilization(p.to_string())),
                None => {
                    self.partial(
                        "a Utilization target without `averageUtilization`".into(),
                        node.at,
                    );
                    None
                }
            },
            "AverageValue" => self
                .quantity(node.get("averageValue"), "`averageValue`", node.at)
                .map(Target::AverageValue),
            "Value" => self
                .quantity(node.get("value"), "`value`", node.at)
                .map(Target::Value),
            other => {
                self.partial(
                    format!("target type `{other}`: HPA's are Utilization, AverageValue and Value"),
                    node.at,
                );
                None
            }
        }
    }

    /// `{name, selector}` of a Pods, Object or External metric: the name and the labels.
    fn metric_identifier(
        &mut self,
        node: Option<&Node>,
        at: Loc,
    ) -> Option<(String, Vec<(String, String)>)> {
        let Some(node) = node else {
            self.partial("a metric without `metric`".into(), at);
            return None;
        };
        self.known(node, "metric", &["name", "selector"]);
        let name = node.get("name").and_then(Node::scalar)?;
        let mut labels = Vec::new();
        if let Some(selector) = node.get("selector") {
            self.known(selector, "metric.selector", &["matchLabels"]);
            if let Some(match_labels) = selector.get("matchLabels") {
                for (k, _, v) in match_labels.entries() {
                    labels.push((k.clone(), v.scalar().unwrap_or_default()));
                }
            }
        }
        Some((name, labels))
    }

    fn hpa_metric(&mut self, metric: &Node) {
        let ty = metric
            .get("type")
            .and_then(Node::scalar)
            .unwrap_or_default();
        let key = match ty.as_str() {
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            other => {
                self.partial(format!("metric type `{other}`"), metric.at);
                return;
            }
        };
        self.known(metric, "metrics[]", &["type", key]);
        let Some(body) = metric.get(key) else {
            self.partial(format!("a `{ty}` metric without `{key}`"), metric.at);
            return;
        };
        match ty.as_str() {
            "Resource" | "ContainerResource" => {
                let mut fields = vec!["name", "target"];
                if ty == "ContainerResource" {
                    fields.push("container");
                }
                self.known(body, key, &fields);
                let resource = body.get("name").and_then(Node::scalar).unwrap_or_default();
                let container = body.get("container").and_then(Node::scalar);
                if let Some(target) = self.target(body.get("target"), body.at) {
                    self.resource(&resource, container.as_deref(), target, body.at);
                }
            }
            "Pods" => {
                self.known(body, key, &["metric", "target"]);
                let Some((name, labels)) = self.metric_identifier(body.get("metric"), body.at)
                else {
                    return;
                };
                let Some(target) = self.target(body.get("target"), body.at) else {
                    return;
                };
                let Target::AverageValue(q) = target else {
                    self.partial("a Pods metric takes an AverageValue target".into(), body.at);
                    return;
                };
                let matchers = Matchers {
                    namespace: Some(self.namespace.clone()),
                    resource: Some(("pod".into(), NameMatch::Like(self.pods()))),
                    labels,
                };
                self.comment(format!("Pods metric `{name}`: its average over the pods"));
                let ident =
                    self.adapter_metric("Pods", &name, matchers, Some("pod".into()), body.at);
                self.rules.push(format!("track {ident} at {q}"));
            }
            "Object" => {
                self.known(body, key, &["describedObject", "metric", "target"]);
                let Some((name, labels)) = self.metric_identifier(body.get("metric"), body.at)
                else {
                    return;
                };
                let described = body.get("describedObject");
                let kind = described
                    .and_then(|d| d.get("kind"))
                    .and_then(Node::scalar)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let object = described
                    .and_then(|d| d.get("name"))
                    .and_then(Node::scalar)
                    .unwrap_or_default();
                let Some(target) = self.target(body.get("target"), body.at) else {
                    return;
                };
                let matchers = Matchers {
                    namespace: Some(self.namespace.clone()),
                    resource: Some((kind.clone(), NameMatch::Is(object.clone()))),
                    labels,
                };
                self.comment(format!("Object metric `{name}` of {kind} `{object}`"));
                let ident = self.adapter_metric("Object", &name, matchers, Some(kind), body.at);
                self.value_rule(&ident, target, body.at);
            }
            _ => {
                self.known(body, key, &["metric", "target"]);
                let Some((name, labels)) = self.metric_identifier(body.get("metric"), body.at)
                else {
                    return;
                };
                let Some(target) = self.target(body.get("target"), body.at) else {
                    return;
                };
                let matchers = Matchers {
                    namespace: Some(self.namespace.clone()),
                    resource: None,
                    labels,
                };
                self.comment(format!("External metric `{name}`: the sum of its series"));
                let ident = self.adapter_metric("External", &name, matchers, None, body.at);
                self.value_rule(&ident, target, body.at);
            }
        }
    }

    /// An Object or External metric: `Value` is a ratio to the target
    /// (`ceil(current × value / target)`), `AverageValue` a total to share
    /// (`ceil(value / target)`).
    pub(super) fn value_rule(&mut self, ident: &str, target: Target, at: Loc) {
        match target {
            Target::Value(q) => self.rules.push(format!("track {ident} at {q}")),
            Target::AverageValue(q) => self.rules.push(format!("track {ident} per replica {q}")),
            Target::Utilization(_) => self.partial(
                "a Utilization target on a metric that is not a resource".into(),
                at,
            ),
        }
    }

    /// A `Pods`, `Object` or `External` metric, whose PromQL prometheus-adapter's rules
    /// give (filled in by `import`): a metric line with a placeholder, and its name.
    /// HPA averages a Pods metric over the pods, and sums the others' series.
    fn adapter_metric(
        &mut self,
        kind: &str,
        name: &str,
        matchers: Matchers,
        group_by: Option<String>,
        at: Loc,
    ) -> String {
        let ident = self.ident(name);
        self.metric(&ident, &format!("{}:{ident}", super::PLACEHOLDER));
        self.pending.push(Pending {
            ident: ident.clone(),
            external: kind == "External",
            metric: name.to_string(),
            matchers,
            group_by,
            wrap: if kind == "Pods" { "avg" } else { "sum" },
            describe: format!("{kind} metric `{name}`"),
            at,
        });
        ident
    }

    /// `behavior.scaleUp` / `scaleDown` → stabilisation, limits, select, tolerance.
    pub(super) fn behavior(&mut self, behavior: &Node, path: &str) {
        self.known(behavior, path, &["scaleUp", "scaleDown"]);
        let mut tolerances = [None, None];
        for (i, (dir, key)) in [("up", "scaleUp"), ("down", "scaleDown")]
            .into_iter()
            .enumerate()
        {
            let Some(rules) = behavior.get(key) else {
                continue;
            };
            let here = format!("{path}.{key}");
            self.known(
                rules,
                &here,
                &[
                    "stabilizationWindowSeconds",
                    "selectPolicy",
                    "policies",
                    "tolerance",
                ],
            );
            if let Some(t) = rules.get("tolerance") {
                tolerances[i] = Some((self.quantity(Some(t), "`tolerance`", t.at), t.at));
            }
            if let Some(seconds) = self.count(
                rules.get("stabilizationWindowSeconds"),
                "stabilizationWindowSeconds",
            ) {
                self.settings
                    .push(format!("stabilize {dir} {}", duration(seconds)));
            }
            let select = rules
                .get("selectPolicy")
                .and_then(Node::scalar)
                .unwrap_or_else(|| "Max".into());
            match select.as_str() {
                "Disabled" => {
                    self.settings.push(format!("limit {dir} disabled"));
                    continue;
                }
                "Min" => self.settings.push(format!("limit {dir} select min")),
                "Max" => {}
                other => {
                    let at = rules.get("selectPolicy").map_or(rules.at, |n| n.at);
                    self.partial(
                        format!("`{here}.selectPolicy: {other}` (Max, Min or Disabled)"),
                        at,
                    );
                }
            }
            if let Some(policies) = rules.get("policies") {
                for p in policies.items() {
                    self.known(
                        p,
                        &format!("{here}.policies[]"),
                        &["type", "value", "periodSeconds"],
                    );
                    let value = self.count(p.get("value"), "value");
                    let period = self.count(p.get("periodSeconds"), "periodSeconds");
                    let (Some(value), Some(period)) = (value, period) else {
                        self.partial(
                            "a scaling policy without `value` or `periodSeconds`".into(),
                            p.at,
                        );
                        continue;
                    };
                    if !(1..=1800).contains(&period) || value == 0 {
                        self.partial(
                            format!(
                                "a scaling policy of {value} per {period}s (HPA allows a value above 0 and 1–1800 s)"
                            ),
                            p.at,
                        );
                        continue;
                    }
                    match p.get("type").and_then(Node::scalar).as_deref() {
                        Some("Pods") => self
                            .settings
                            .push(format!("limit {dir} {value} per {}", duration(period))),
                        Some("Percent") => {
                            self.settings
                                .push(format!("limit {dir} {value}% per {}", duration(period)));
                        }
                        other => self.partial(
                            format!(
                                "scaling policy type `{}` (Pods or Percent)",
                                other.unwrap_or_default()
                            ),
                            p.at,
                        ),
                    }
                }
            }
        }
        // One tolerance in policyctl for both directions; HPA's default is 10%.
        let [up, down] = tolerances;
        if up.is_none() && down.is_none() {
            return;
        }
        let at = down
            .as_ref()
            .or(up.as_ref())
            .map_or(behavior.at, |(_, at)| *at);
        let value =
            |t: Option<(Option<String>, Loc)>| t.map_or(Some("0.1".to_string()), |(q, _)| q);
        match (value(up), value(down)) {
            (Some(u), Some(d)) if u == d => {
                let percent = super::decimal(&u, 2).unwrap_or(u);
                self.settings.push(format!("tolerance {percent}%"));
            }
            (Some(u), Some(d)) => self.partial(
                format!("tolerance {u} up and {d} down (HPA's default is 0.1): policyctl has one tolerance for both directions"),
                at,
            ),
            // An unreadable tolerance is reported already.
            _ => {}
        }
    }
}
