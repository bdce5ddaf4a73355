//! KEDA ScaledObject (`keda.sh/v1alpha1`) → `.scale`.
//!
//! KEDA drives an HPA: each trigger is an External metric (`AverageValue` by default:
//! `ceil(value / threshold)`; `Value`: `ceil(current × value / threshold)`), the HPA takes
//! the highest, with `advanced.horizontalPodAutoscalerConfig.behavior`. KEDA itself only
//! moves 0 ↔ 1: it activates on a trigger above its `activationThreshold` and returns to
//! zero `cooldownPeriod` after the last active poll.

use super::yaml::{Loc, Node};
use super::{Convert, HPA_PERIOD, Imported, Level, Target, duration, int};

/// What the triggers found, for the checks that span them.
#[derive(Default)]
struct Triggers {
    /// Activation thresholds other than 0 (they matter only from zero).
    activation: Vec<Loc>,
    /// Metric names by trigger name, for `scalingModifiers.formula`.
    named: Vec<(String, String)>,
}

impl Convert<'_> {
    pub(super) fn scaled_object(mut self) -> Imported {
        let Some(spec) = self.obj.get("spec") else {
            self.partial("no `spec`".into(), self.obj.at);
            return self.finish();
        };
        self.known(
            spec,
            "spec",
            &[
                "scaleTargetRef",
                "minReplicaCount",
                "maxReplicaCount",
                "idleReplicaCount",
                "pollingInterval",
                "cooldownPeriod",
                "initialCooldownPeriod",
                "fallback",
                "advanced",
                "triggers",
            ],
        );
        if let Some(target) = spec.get("scaleTargetRef") {
            self.known(
                target,
                "spec.scaleTargetRef",
                &["name", "kind", "apiVersion", "envSourceContainerName"],
            );
        }
        self.scale_target(spec.get("scaleTargetRef"), "Deployment");
        let min = self
            .count(spec.get("minReplicaCount"), "minReplicaCount")
            .unwrap_or(0);
        let max = self
            .count(spec.get("maxReplicaCount"), "maxReplicaCount")
            .unwrap_or(100);
        self.line(format!("replicas {min}..{max}"));
        let polling = self
            .count(spec.get("pollingInterval"), "pollingInterval")
            .unwrap_or(30);
        self.comment(format!(
            "pollingInterval {polling}s is KEDA's check for activity (0 <-> 1); the count is\nHPA's, at its sync period"
        ));
        self.line(format!("every {HPA_PERIOD}"));
        self.pause_annotations();
        if let Some(idle) = spec.get("idleReplicaCount") {
            self.partial(
                "`idleReplicaCount`: policyctl has no idle count between zero and MIN".into(),
                idle.at,
            );
        }
        if let Some(initial) = spec
            .get("initialCooldownPeriod")
            .filter(|n| int(Some(n)) != Some(0))
        {
            self.partial(
                "`initialCooldownPeriod`: policyctl has no delay after a policy is loaded".into(),
                initial.at,
            );
        }

        let advanced = spec.get("advanced");
        let modifiers = advanced.and_then(|a| a.get("scalingModifiers"));
        let triggers = self.triggers(spec.get("triggers"), modifiers.is_some());
        if let Some(m) = modifiers {
            self.scaling_modifiers(m, &triggers);
        }
        let mut down_window = 300;
        if let Some(advanced) = advanced {
            self.known(
                advanced,
                "spec.advanced",
                &[
                    "restoreToOriginalReplicaCount",
                    "horizontalPodAutoscalerConfig",
                    "scalingModifiers",
                ],
            );
            if let Some(r) = advanced.get("restoreToOriginalReplicaCount")
                && r.scalar().as_deref() == Some("true")
            {
                self.partial(
                        "`restoreToOriginalReplicaCount: true`: a removed policy leaves the count where it is".into(),
                        r.at,
                    );
            }
            if let Some(hpa) = advanced.get("horizontalPodAutoscalerConfig") {
                self.known(
                    hpa,
                    "spec.advanced.horizontalPodAutoscalerConfig",
                    &["name", "behavior"],
                );
                if let Some(behavior) = hpa.get("behavior") {
                    self.behavior(
                        behavior,
                        "spec.advanced.horizontalPodAutoscalerConfig.behavior",
                    );
                    if let Some(w) = int(behavior
                        .get("scaleDown")
                        .and_then(|d| d.get("stabilizationWindowSeconds")))
                    {
                        down_window = w;
                    }
                }
            }
        }
        let behavior = advanced
            .and_then(|a| a.get("horizontalPodAutoscalerConfig"))
            .and_then(|h| h.get("behavior"));
        if behavior.is_none() {
            self.settings.push(
                "# no `advanced.horizontalPodAutoscalerConfig.behavior`: HPA's defaults, which are policyctl's own"
                    .into(),
            );
        }
        self.cooldown(spec, min, down_window, &triggers);
        if let Some(fallback) = spec.get("fallback") {
            self.fallback(fallback);
        }
        self.finish()
    }

    /// `autoscaling.keda.sh/paused` → `dry-run`; `paused-replicas` → an override.
    fn pause_annotations(&mut self) {
        let Some(annotations) = self.obj.get("metadata").and_then(|m| m.get("annotations")) else {
            return;
        };
        let paused = annotations.get("autoscaling.keda.sh/paused");
        let replicas = annotations.get("autoscaling.keda.sh/paused-replicas");
        if let Some(n) = replicas {
            let count = n.scalar().unwrap_or_default();
            let policy = format!("{}/{}", self.namespace, self.name);
            self.partial(
                format!(
                    "paused at {count} replicas (`autoscaling.keda.sh/paused-replicas`): set the same override once `serve` runs the policy: \
                     curl -X POST -H 'Authorization: Bearer TOKEN' -d '{{\"replicas\": {count}, \"reason\": \"paused-replicas\"}}' \
                     http://127.0.0.1:9187/v1/policies/{}/override",
                    policy.replace('/', "%2F")
                ),
                n.at,
            );
        } else if let Some(p) = paused
            && p.scalar().as_deref() == Some("true")
        {
            self.comment("paused (`autoscaling.keda.sh/paused: \"true\"`): decides, never scales");
            self.line("dry-run");
        }
    }

    fn triggers(&mut self, node: Option<&Node>, composed: bool) -> Triggers {
        let mut found = Triggers::default();
        let Some(node) = node.filter(|n| !n.items().is_empty()) else {
            self.partial("no `spec.triggers`".into(), self.obj.at);
            return found;
        };
        for (i, trigger) in node.items().iter().enumerate() {
            self.known(
                trigger,
                "spec.triggers[]",
                &[
                    "type",
                    "name",
                    "metadata",
                    "metricType",
                    "authenticationRef",
                    "useCachedMetrics",
                ],
            );
            let ty = trigger
                .get("type")
                .and_then(Node::scalar)
                .unwrap_or_default();
            let name = trigger.get("name").and_then(Node::scalar);
            let empty = Node {
                value: super::yaml::Value::Map(Vec::new()),
                at: trigger.at,
            };
            let meta = trigger.get("metadata").unwrap_or(&empty);
            let metric_type = trigger
                .get("metricType")
                .and_then(Node::scalar)
                .or_else(|| {
                    meta.get("type")
                        .and_then(Node::scalar)
                        .filter(|_| matches!(ty.as_str(), "cpu" | "memory"))
                })
                .unwrap_or_else(|| {
                    if matches!(ty.as_str(), "cpu" | "memory") {
                        "Utilization".into()
                    } else {
                        "AverageValue".into()
                    }
                });
            if let Some(a) = trigger.get("authenticationRef") {
                self.note(
                    Level::Info,
                    "`authenticationRef`: credentials for the query belong to the `prometheus` source of the service configuration".into(),
                    a.at,
                );
            }
            match ty.as_str() {
                "prometheus" => {
                    self.known(
                        meta,
                        "metadata",
                        &[
                            "serverAddress", "query", "threshold", "activationThreshold", "metricName",
                            "namespace", "ignoreNullValues", "unsafeSsl", "customHeaders", "queryParameters",
                            "authModes", "cortexOrgID",
                        ],
                    );
                    let Some(query) = meta.get("query").and_then(Node::scalar) else {
                        self.partial("a prometheus trigger without `query`".into(), meta.at);
                        continue;
                    };
                    let wanted = name
                        .clone()
                        .or_else(|| meta.get("metricName").and_then(Node::scalar))
                        .unwrap_or_else(|| format!("trigger_{i}"));
                    let ident = self.ident(&wanted);
                    if let Some(server) = meta.get("serverAddress").and_then(Node::scalar) {
                        self.comment(format!("trigger {i} (prometheus at {server})"));
                    }
                    for key in ["namespace", "customHeaders", "authModes", "cortexOrgID", "queryParameters", "unsafeSsl"] {
                        if let Some(n) = meta.get(key) {
                            self.note(
                                Level::Info,
                                format!("`{key}` belongs to the `prometheus` source of the service configuration"),
                                n.at,
                            );
                        }
                    }
                    let nulls = meta.get("ignoreNullValues").and_then(Node::scalar);
                    let query = query.trim();
                    let query = if nulls.as_deref() == Some("false") {
                        query.to_string()
                    } else {
                        // KEDA reads an empty result as 0 (`ignoreNullValues`, true by
                        // default); an unreachable Prometheus stays missing.
                        format!("({query}) or vector(0)")
                    };
                    self.metric(&ident, &query);
                    found.named.push((name.clone().unwrap_or_default(), ident.clone()));
                    if let Some(a) = meta.get("activationThreshold")
                        && super::quantity(&a.scalar().unwrap_or_default()).as_deref() != Some("0") {
                            found.activation.push(a.at);
                        }
                    if composed {
                        continue;
                    }
                    let Some(threshold) = self.quantity(meta.get("threshold"), "`threshold`", meta.at) else {
                        continue;
                    };
                    let target = match metric_type.as_str() {
                        "Value" => Target::Value(threshold.clone()),
                        "AverageValue" => Target::AverageValue(threshold.clone()),
                        other => {
                            self.partial(format!("metricType `{other}` on a prometheus trigger"), trigger.at);
                            continue;
                        }
                    };
                    if metric_type == "AverageValue" && threshold.parse::<f64>().is_ok_and(|t| t < 1.0) {
                        self.note(
                            Level::Warning,
                            format!(
                                "trigger {i}: `threshold: {threshold}` with metricType AverageValue gives ceil(value / {threshold}) replicas, whatever the current count; \
                                 on a 0–1 ratio (a utilisation) that is at most {} replicas. If the query is a utilisation, `metricType: Value` \
                                 scales with the count (ceil(current × value / {threshold})). Converted as written.",
                                (1.0 / threshold.parse::<f64>().unwrap_or(1.0)).ceil()
                            ),
                            meta.get("threshold").map_or(meta.at, |n| n.at),
                        );
                        self.comment(format!(
                            "AverageValue with a threshold below 1: ceil({ident} / {threshold}), whatever the current count"
                        ));
                    }
                    self.value_rule(&ident, target, trigger.at);
                }
                "cpu" | "memory" => {
                    self.known(meta, "metadata", &["type", "value", "containerName"]);
                    let container = meta.get("containerName").and_then(Node::scalar);
                    let Some(value) = self.quantity(meta.get("value"), "`value`", meta.at) else {
                        continue;
                    };
                    if composed {
                        self.partial(format!("a {ty} trigger inside `scalingModifiers`"), trigger.at);
                        continue;
                    }
                    let target = match metric_type.as_str() {
                        "Utilization" => Target::Utilization(value),
                        "AverageValue" => Target::AverageValue(value),
                        other => {
                            self.partial(format!("metricType `{other}` on a {ty} trigger"), trigger.at);
                            continue;
                        }
                    };
                    self.resource(&ty, container.as_deref(), target, trigger.at);
                }
                "cron" => {
                    if composed {
                        self.partial("a cron trigger inside `scalingModifiers`".into(), trigger.at);
                        continue;
                    }
                    self.cron(meta, name.as_deref(), i);
                }
                other => self.partial(
                    format!("trigger type `{other}`: import converts prometheus, cpu, memory and cron triggers"),
                    trigger.get("type").map_or(trigger.at, |n| n.at),
                ),
            }
        }
        found
    }

    /// A cron trigger → a schedule: `start` for as long as until `end`, at least N.
    fn cron(&mut self, meta: &Node, name: Option<&str>, index: usize) {
        self.known(
            meta,
            "metadata",
            &["timezone", "start", "end", "desiredReplicas"],
        );
        let text = |key: &str| meta.get(key).and_then(Node::scalar);
        let replicas = self.count(meta.get("desiredReplicas"), "desiredReplicas");
        let (Some(zone), Some(start), Some(end), Some(replicas)) =
            (text("timezone"), text("start"), text("end"), replicas)
        else {
            self.partial(
                "a cron trigger needs `timezone`, `start`, `end` and `desiredReplicas`".into(),
                meta.at,
            );
            return;
        };
        let Some(length) = cron_length(&start, &end) else {
            self.partial(
                format!("cron trigger `{start}` to `{end}`: import needs the same days in both and a fixed minute and hour"),
                meta.at,
            );
            return;
        };
        let schedule = name.map_or_else(|| format!("cron-{index}"), str::to_string);
        self.schedules
            .push(format!("schedule \"{}\" {{", schedule.to_ascii_lowercase()));
        self.schedules.push(format!(
            "  cron \"{start}\" for {} in \"{zone}\"",
            duration(length)
        ));
        self.schedules
            .push(format!("  replicas at least {replicas}"));
        self.schedules.push("}".into());
    }

    /// `cooldownPeriod` governs only the step to zero.
    fn cooldown(&mut self, spec: &Node, min: i64, down_window: i64, triggers: &Triggers) {
        let cooldown = self
            .count(spec.get("cooldownPeriod"), "cooldownPeriod")
            .unwrap_or(300);
        let at = spec.get("cooldownPeriod").map_or(spec.at, |n| n.at);
        if min > 0 {
            self.settings.push(format!(
                "# cooldownPeriod {cooldown}s only governs the step to zero: with minReplicaCount {min}, none"
            ));
            return;
        }
        // From zero: a trigger proposes 0 when its value is 0 and at least 1 otherwise,
        // so `stabilize down` holds the last active recommendation for the cooldown.
        if cooldown == down_window {
            self.settings.push(format!(
                "# cooldownPeriod {cooldown}s to zero: the scale-down stabilisation holds the last active count as long"
            ));
            if !self
                .settings
                .iter()
                .any(|s| s.starts_with("stabilize down"))
            {
                self.settings
                    .push(format!("stabilize down {}", duration(cooldown)));
            }
        } else {
            self.partial(
                format!(
                    "cooldownPeriod {cooldown}s to zero with a {down_window}s scale-down stabilisation: policyctl holds both with one `stabilize down`"
                ),
                at,
            );
        }
        for a in &triggers.activation {
            self.partial(
                "`activationThreshold` other than 0 with minReplicaCount 0: policyctl activates on any value above 0".into(),
                *a,
            );
        }
    }

    /// `fallback` → `on missing scale to N after K`.
    fn fallback(&mut self, node: &Node) {
        self.known(
            node,
            "spec.fallback",
            &["failureThreshold", "replicas", "behavior"],
        );
        let k = self
            .count(node.get("failureThreshold"), "fallback.failureThreshold")
            .filter(|k| *k > 0);
        let n = self.count(node.get("replicas"), "fallback.replicas");
        let (Some(k), Some(n)) = (k, n) else {
            self.partial(
                "`fallback` needs `failureThreshold` and `replicas`".into(),
                node.at,
            );
            return;
        };
        if let Some(b) = node
            .get("behavior")
            .and_then(Node::scalar)
            .filter(|b| b != "static")
        {
            self.partial(
                format!("`fallback.behavior: {b}` (policyctl's is KEDA's `static`)"),
                node.at,
            );
        }
        self.settings
            .push(format!("on missing scale to {n} after {k}"));
    }

    /// `scalingModifiers` → `let composite = FORMULA` and its target.
    fn scaling_modifiers(&mut self, node: &Node, triggers: &Triggers) {
        self.known(
            node,
            "spec.advanced.scalingModifiers",
            &["formula", "target", "activationTarget", "metricType"],
        );
        let Some(formula) = node.get("formula").and_then(Node::scalar) else {
            self.partial("`scalingModifiers` without `formula`".into(), node.at);
            return;
        };
        let at = node.get("formula").map_or(node.at, |n| n.at);
        let expr = match formula_expr(&formula, &triggers.named) {
            Ok(expr) => expr,
            Err(e) => {
                self.partial(format!("`formula: {formula}`: {e}"), at);
                return;
            }
        };
        let Some(target) = self.quantity(node.get("target"), "`scalingModifiers.target`", node.at)
        else {
            return;
        };
        let ident = self.ident("composite");
        self.lets
            .push(format!("# scalingModifiers.formula: {formula}"));
        self.lets.push(format!("let {ident} = {expr}"));
        let metric_type = node
            .get("metricType")
            .and_then(Node::scalar)
            .unwrap_or_else(|| "AverageValue".into());
        let target = if metric_type == "Value" {
            Target::Value(target)
        } else {
            Target::AverageValue(target)
        };
        self.value_rule(&ident, target, node.at);
    }
}

/// `0 8 * * 1-5` to `0 18 * * 1-5` → 10 hours: the same day fields, fixed minute and hour.
fn cron_length(start: &str, end: &str) -> Option<i64> {
    let s: Vec<&str> = start.split_whitespace().collect();
    let e: Vec<&str> = end.split_whitespace().collect();
    if s.len() != 5 || e.len() != 5 || s[2..] != e[2..] {
        return None;
    }
    let minutes = |f: &[&str]| -> Option<i64> {
        Some(f[1].parse::<i64>().ok()? * 60 + f[0].parse::<i64>().ok()?)
    };
    let (a, b) = (minutes(&s)?, minutes(&e)?);
    let length = (b - a).rem_euclid(24 * 60);
    (length > 0).then_some(length * 60)
}

/// KEDA's formula (expr-lang) → a `.scale` expression: names of triggers, numbers,
/// `+ - * /`, parentheses, `??`, and `min max abs ceil floor round`.
fn formula_expr(formula: &str, triggers: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = formula.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if let Some((_, ident)) = triggers.iter().find(|(name, _)| *name == word) {
                out.push_str(ident);
            } else if matches!(
                word.as_str(),
                "min" | "max" | "abs" | "ceil" | "floor" | "round"
            ) {
                out.push_str(&word);
            } else {
                return Err(format!(
                    "`{word}` is neither a trigger's name nor a function policyctl has"
                ));
            }
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.extend(&chars[start..i]);
        } else if c == '?' && chars.get(i + 1) == Some(&'?') {
            out.push_str(" ?? ");
            i += 2;
        } else if "+-*/".contains(c) {
            out.push_str(&format!(" {c} "));
            i += 1;
        } else if "(),".contains(c) {
            out.push(c);
            if c == ',' {
                out.push(' ');
            }
            i += 1;
        } else {
            return Err(format!(
                "`{c}` has no policyctl equivalent (conditions and `? :` are not imported)"
            ));
        }
    }
    let expr = out.trim().to_string();
    // What the tokens make must be an expression of the language.
    let probe = format!("policy \"p\" {{ target t \"x\" replicas 1..2 let x = {expr} }}");
    match crate::syntax::format::format(&probe) {
        Ok(_) => Ok(expr),
        Err(_) => Err("it is not a complete expression".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cron_windows_and_formulas() {
        assert_eq!(cron_length("0 8 * * 1-5", "0 18 * * 1-5"), Some(36_000));
        assert_eq!(cron_length("30 22 * * *", "0 2 * * *"), Some(12_600));
        assert_eq!(cron_length("0 8 * * 1", "0 18 * * 2"), None);
        let t = vec![
            ("trig_one".to_string(), "trig_one".to_string()),
            ("b".into(), "b_2".into()),
        ];
        assert_eq!(
            formula_expr("(trig_one + b)/2", &t).unwrap(),
            "(trig_one + b_2) / 2"
        );
        assert_eq!(
            formula_expr("trig_one ?? b ?? 3", &t).unwrap(),
            "trig_one ?? b_2 ?? 3"
        );
        assert!(formula_expr("trig_one > 2 ? 1 : 0", &t).is_err());
        assert!(formula_expr("nope + 1", &t).is_err());
        assert!(formula_expr("??", &t).is_err());
        assert!(formula_expr("(trig_one", &t).is_err());
    }
}
