//! `policyctl import`: Kubernetes HorizontalPodAutoscalers (`autoscaling/v1`, `v2beta2`,
//! `v2`) and KEDA ScaledObjects (`keda.sh/v1alpha1`) → `.scale` text with the same
//! decisions. Pure: YAML trees in, text and notes out; the CLI reads and writes files.
//!
//! Every field is either converted exactly, or named in a comment of the output and in a
//! `partial` note (the CLI's exit 1). docs/migrating.md is the field-by-field table.

pub mod adapter;
mod hpa;
mod keda;
pub mod yaml;

use std::fmt::Write as _;

use serde::Serialize;

use adapter::{Matchers, Rules};
use yaml::{Loc, Node, Value};

/// How sure the conversion is of one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Not converted exactly: the output says where, and import exits 1.
    Partial,
    /// Converted exactly, but probably not what the author meant.
    Warning,
    /// For the record (an object skipped, a default made explicit).
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub level: Level,
    pub message: String,
    /// Line and column in the input.
    #[serde(skip)]
    pub at: Option<Loc>,
}

/// One converted object.
#[derive(Debug, Clone)]
pub struct Imported {
    /// `HorizontalPodAutoscaler` or `ScaledObject`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// The policy's name: `namespace/name`.
    pub policy: String,
    /// The `kubernetes` actuator's id of the scale target.
    pub target: String,
    /// The `.scale` text (not yet formatted).
    pub text: String,
    pub notes: Vec<Note>,
    pub at: Loc,
    /// Metrics whose PromQL the adapter rules give, filled in by [`import`].
    pending: Vec<Pending>,
}

/// Every object of some documents.
#[derive(Debug, Default)]
pub struct Outcome {
    pub imported: Vec<Imported>,
    /// About the input as a whole: skipped objects, kinds that cannot be converted.
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    pub templates: Option<&'a Rules>,
}

/// The source name every imported metric uses (the conventional one of `check`).
const SOURCE: &str = "prometheus";
/// The actuator name of the kubernetes plugin in the service configuration.
const ACTUATOR: &str = "kubernetes";

/// Convert every HPA and ScaledObject of `docs` (`List` objects are opened).
pub fn import(docs: &[Node], options: Options<'_>) -> Outcome {
    let mut out = Outcome::default();
    let mut objects = Vec::new();
    for doc in docs {
        flatten(doc, &mut objects);
    }
    for obj in objects {
        let kind = obj.get("kind").and_then(Node::scalar).unwrap_or_default();
        let api = obj
            .get("apiVersion")
            .and_then(Node::scalar)
            .unwrap_or_default();
        let name = obj
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::scalar)
            .unwrap_or_default();
        match (kind.as_str(), api.as_str()) {
            ("HorizontalPodAutoscaler", "autoscaling/v1" | "autoscaling/v2" | "autoscaling/v2beta2") => {
                if let Some(owner) = owned_by_scaled_object(obj) {
                    out.notes.push(Note {
                        level: Level::Info,
                        message: format!(
                            "skipped HorizontalPodAutoscaler `{name}`: KEDA made it for ScaledObject `{owner}` (import the ScaledObject)"
                        ),
                        at: Some(obj.at),
                    });
                    continue;
                }
                out.imported.push(Convert::new(obj, "HorizontalPodAutoscaler").hpa(&api));
            }
            ("ScaledObject", "keda.sh/v1alpha1") => {
                out.imported.push(Convert::new(obj, "ScaledObject").scaled_object());
            }
            ("HorizontalPodAutoscaler" | "ScaledObject", _) => out.notes.push(Note {
                level: Level::Partial,
                message: format!(
                    "{kind} `{name}` has apiVersion `{api}`: import reads {}",
                    if kind == "ScaledObject" {
                        "keda.sh/v1alpha1"
                    } else {
                        "autoscaling/v1, autoscaling/v2beta2 and autoscaling/v2"
                    }
                ),
                at: Some(obj.get("apiVersion").map_or(obj.at, |n| n.at)),
            }),
            ("ScaledJob" | "VerticalPodAutoscaler", _) => out.notes.push(Note {
                level: Level::Partial,
                message: format!(
                    "{kind} `{name}` cannot be imported: policyctl scales long-running replicas (HorizontalPodAutoscaler and ScaledObject are imported)"
                ),
                at: Some(obj.at),
            }),
            ("", _) => out.notes.push(Note {
                level: Level::Partial,
                message: "a document without `kind`: not a Kubernetes object".into(),
                at: Some(obj.at),
            }),
            _ => out.notes.push(Note {
                level: Level::Info,
                message: format!("skipped {kind} `{name}`: not an autoscaler"),
                at: Some(obj.at),
            }),
        }
    }
    for imported in &mut out.imported {
        imported.fill_queries(options);
    }
    disambiguate(&mut out.imported);
    same_target(&mut out.imported);
    out
}

fn flatten<'a>(doc: &'a Node, out: &mut Vec<&'a Node>) {
    let kind = doc.get("kind").and_then(Node::scalar).unwrap_or_default();
    match doc.get("items") {
        Some(items) if kind == "List" || kind.ends_with("List") => {
            for item in items.items() {
                flatten(item, out);
            }
        }
        _ => out.push(doc),
    }
}

fn owned_by_scaled_object(obj: &Node) -> Option<String> {
    obj.get("metadata")?
        .get("ownerReferences")?
        .items()
        .iter()
        .find(|o| o.get("kind").and_then(Node::scalar).as_deref() == Some("ScaledObject"))
        .and_then(|o| o.get("name").and_then(Node::scalar))
}

/// Two objects of one name (an HPA and a ScaledObject): their policies are told apart by
/// kind, as policy names must be unique.
fn disambiguate(all: &mut [Imported]) {
    let names: Vec<String> = all.iter().map(|i| i.policy.clone()).collect();
    for imported in all.iter_mut() {
        if names.iter().filter(|n| **n == imported.policy).count() > 1 {
            let suffix = match imported.kind {
                "ScaledObject" => "scaledobject",
                _ => "hpa",
            };
            let renamed = format!("{}-{suffix}", imported.policy);
            imported.text = imported.text.replacen(
                &format!("policy \"{}\"", imported.policy),
                &format!("policy \"{renamed}\""),
                1,
            );
            imported.notes.push(Note {
                level: Level::Info,
                message: format!(
                    "named `{renamed}`: another object is also `{}`",
                    imported.policy
                ),
                at: Some(imported.at),
            });
            imported.policy = renamed;
        }
    }
}

/// Two autoscalers on one workload fight; so would their two policies.
fn same_target(all: &mut [Imported]) {
    let who: Vec<(String, String)> = all
        .iter()
        .map(|i| {
            (
                i.target.clone(),
                format!("{} `{}` (line {})", i.kind, i.name, i.at.line),
            )
        })
        .collect();
    for (n, imported) in all.iter_mut().enumerate() {
        let others: Vec<&str> = who
            .iter()
            .enumerate()
            .filter(|(m, (target, _))| *m != n && *target == imported.target)
            .map(|(_, (_, name))| name.as_str())
            .collect();
        if !others.is_empty() {
            imported.notes.push(Note {
                level: Level::Warning,
                message: format!(
                    "`{}` is also scaled by {}: two autoscalers on one workload undo each other's decisions; keep one policy",
                    imported.target,
                    others.join(", ")
                ),
                at: Some(imported.at),
            });
        }
    }
}

/// A metric whose PromQL comes from prometheus-adapter's rules (or stays a placeholder).
#[derive(Debug, Clone)]
struct Pending {
    ident: String,
    external: bool,
    metric: String,
    matchers: Matchers,
    group_by: Option<String>,
    /// Wrap the adapter's per-object result: `avg` (Pods) or `sum` (External).
    wrap: &'static str,
    describe: String,
    at: Loc,
}

/// The conversion of one object: the text so far and what it noticed.
struct Convert<'a> {
    obj: &'a Node,
    kind: &'static str,
    namespace: String,
    name: String,
    /// Comments above the policy (what could not be converted, where it came from).
    header: Vec<String>,
    /// Statements (with their own comment lines) inside the policy: the target, bounds,
    /// period and metrics; then `let`s, rules, settings (behavior) and schedules.
    body: Vec<String>,
    lets: Vec<String>,
    rules: Vec<String>,
    settings: Vec<String>,
    schedules: Vec<String>,
    notes: Vec<Note>,
    idents: Vec<String>,
    pending: Vec<Pending>,
    target: String,
}

/// Placeholder for a query import could not write; `check` rejects it (not PromQL).
const PLACEHOLDER: &str = "POLICYCTL-IMPORT-PLACEHOLDER";

impl Imported {
    fn fill_queries(&mut self, options: Options<'_>) {
        for p in std::mem::take(&mut self.pending) {
            let marker = format!("{PLACEHOLDER}:{}", p.ident);
            let found = options.templates.and_then(|rules| {
                rules.query(p.external, &p.metric, &p.matchers, p.group_by.as_deref())
            });
            let replacement = match found {
                Some((query, rule_at)) => {
                    self.notes.push(Note {
                        level: Level::Info,
                        message: format!(
                            "{}: PromQL from the prometheus-adapter rule at line {}",
                            p.describe, rule_at.line
                        ),
                        at: Some(p.at),
                    });
                    format!("{}({query})", p.wrap)
                }
                None => {
                    self.notes.push(Note {
                        level: Level::Partial,
                        message: format!(
                            "{}: no PromQL for it{} — the output holds a placeholder that `check` rejects; write the query, or give --prometheus-templates",
                            p.describe,
                            if options.templates.is_some() {
                                " in the prometheus-adapter rules"
                            } else {
                                ""
                            }
                        ),
                        at: Some(p.at),
                    });
                    format!(
                        "{PLACEHOLDER}: the PromQL of {} (prometheus-adapter serves it in most clusters)",
                        p.describe.replace('`', "")
                    )
                }
            };
            self.text = self.text.replace(&marker, &replacement);
        }
    }
}

/// HPA's default evaluation period (kube-controller-manager's
/// `--horizontal-pod-autoscaler-sync-period`), which also drives KEDA's 1..N scaling.
const HPA_PERIOD: &str = "15s";

impl<'a> Convert<'a> {
    fn new(obj: &'a Node, kind: &'static str) -> Convert<'a> {
        let meta = obj.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Node::scalar)
            .unwrap_or_default();
        let namespace = meta.and_then(|m| m.get("namespace")).and_then(Node::scalar);
        let mut c = Convert {
            obj,
            kind,
            namespace: namespace.clone().unwrap_or_else(|| "default".into()),
            name,
            header: Vec::new(),
            body: Vec::new(),
            lets: Vec::new(),
            rules: Vec::new(),
            settings: Vec::new(),
            schedules: Vec::new(),
            notes: Vec::new(),
            idents: Vec::new(),
            pending: Vec::new(),
            target: String::new(),
        };
        if c.name.is_empty() {
            c.partial("the object has no `metadata.name`".into(), obj.at);
        }
        if namespace.is_none() {
            c.note(
                Level::Info,
                "no `metadata.namespace`: the namespace is `default`, as kubectl applies it".into(),
                meta.map_or(obj.at, |m| m.at),
            );
        }
        c
    }

    fn note(&mut self, level: Level, message: String, at: Loc) {
        self.notes.push(Note {
            level,
            message,
            at: Some(at),
        });
    }

    /// Something not converted exactly: a comment in the output and a `partial` note.
    fn partial(&mut self, message: String, at: Loc) {
        self.header.push(format!(
            "# NOT CONVERTED (line {}): {}",
            at.line,
            message.replace('\n', " ")
        ));
        self.note(Level::Partial, message, at);
    }

    /// A comment line inside the policy, above the next statement.
    fn comment(&mut self, text: impl AsRef<str>) {
        for line in text.as_ref().lines() {
            self.body.push(format!("# {line}"));
        }
    }

    fn line(&mut self, statement: impl Into<String>) {
        self.body.push(statement.into());
    }

    /// Keys of `node` that are not `known` are fields without an equivalent.
    fn known(&mut self, node: &Node, path: &str, known: &[&str]) {
        for (key, at, _) in node.entries() {
            if !known.contains(&key.as_str()) {
                self.partial(format!("`{path}.{key}` has no policyctl equivalent"), *at);
            }
        }
    }

    /// A whole number ≥ 0 (a count, seconds, a percentage); `None` when absent, and a
    /// partial note when present but something else.
    fn count(&mut self, node: Option<&Node>, what: &str) -> Option<i64> {
        let node = node?;
        match int(Some(node)) {
            Some(n) if n >= 0 => Some(n),
            _ => {
                let shown = node.scalar().unwrap_or_else(|| node.kind().to_string());
                self.partial(
                    format!("`{what}` must be a whole number ≥ 0, not `{shown}`"),
                    node.at,
                );
                None
            }
        }
    }

    /// A fresh identifier for a metric, from a Kubernetes or KEDA name.
    fn ident(&mut self, wanted: &str) -> String {
        let mut base: String = wanted
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        base = base.trim_matches('_').to_string();
        while base.contains("__") {
            base = base.replace("__", "_");
        }
        if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
            base = format!("m_{base}");
        }
        if crate::check::RESERVED.contains(&base.as_str()) {
            base = format!("{base}_value");
        }
        let mut ident = base.clone();
        let mut n = 2;
        while self.idents.contains(&ident) {
            ident = format!("{base}_{n}");
            n += 1;
        }
        self.idents.push(ident.clone());
        ident
    }

    fn metric(&mut self, ident: &str, query: &str) {
        self.line(format!("metric {ident} = {SOURCE} {}", raw(query)));
    }

    /// `scaleTargetRef` → the kubernetes actuator's `namespace/kind/name`.
    fn scale_target(&mut self, node: Option<&Node>, default_kind: &str) {
        let Some(node) = node else {
            self.partial(
                "no `spec.scaleTargetRef`: nothing to scale".into(),
                self.obj.at,
            );
            self.target = format!("{}/deployment/{}", self.namespace, self.name);
            return;
        };
        let kind = node
            .get("kind")
            .and_then(Node::scalar)
            .unwrap_or_else(|| default_kind.into());
        let name = node.get("name").and_then(Node::scalar).unwrap_or_default();
        if name.is_empty() {
            self.partial("`scaleTargetRef` has no `name`".into(), node.at);
        }
        if !matches!(kind.as_str(), "Deployment" | "StatefulSet") {
            self.partial(
                format!(
                    "the kubernetes actuator scales Deployments and StatefulSets, not `{kind}`"
                ),
                node.get("kind").map_or(node.at, |k| k.at),
            );
        }
        self.target = format!("{}/{}/{}", self.namespace, kind.to_ascii_lowercase(), name);
        let target = self.target.clone();
        self.line(format!("target {ACTUATOR} \"{target}\""));
    }

    /// The name pattern of the target's pods (a Deployment's pods are
    /// `NAME-<replicaset hash>-<suffix>`, a StatefulSet's `NAME-<ordinal>`).
    fn pods(&self) -> String {
        let mut parts = self.target.splitn(3, '/').skip(1);
        let kind = parts.next().unwrap_or_default();
        // Kubernetes names are `[a-z0-9.-]`; a dot is the one regex character, escaped
        // for RE2 and again for the PromQL string.
        let name = parts.next().unwrap_or_default().replace('.', "\\\\.");
        match kind {
            "statefulset" => format!("{name}-[0-9]+"),
            "deployment" => format!("{name}-[a-z0-9]+-[a-z0-9]+"),
            _ => format!("{name}-.+"),
        }
    }

    /// A quantity, or a partial note.
    fn quantity(&mut self, node: Option<&Node>, what: &str, at: Loc) -> Option<String> {
        let Some(node) = node else {
            self.partial(format!("no {what}"), at);
            return None;
        };
        let text = node.scalar().unwrap_or_default();
        match quantity(&text) {
            Some(q) => Some(q),
            None => {
                self.partial(
                    format!("{what} `{text}` is not a quantity policyctl reads"),
                    node.at,
                );
                None
            }
        }
    }

    /// A CPU or memory target (HPA `Resource`/`ContainerResource`, KEDA `cpu`/`memory`).
    fn resource(&mut self, resource: &str, container: Option<&str>, target: Target, at: Loc) {
        let ns = self.namespace.clone();
        let pods = self.pods();
        let container_match = match container {
            Some(c) => format!(",container=\"{c}\""),
            None => ",container!=\"\",container!=\"POD\"".into(),
        };
        let usage = match resource {
            "cpu" => format!(
                "sum(rate(container_cpu_usage_seconds_total{{namespace=\"{ns}\",pod=~\"{pods}\"{container_match}}}[2m]))"
            ),
            "memory" => format!(
                "sum(container_memory_working_set_bytes{{namespace=\"{ns}\",pod=~\"{pods}\"{container_match}}})"
            ),
            other => {
                self.partial(
                    format!("resource `{other}`: import knows cpu and memory"),
                    at,
                );
                return;
            }
        };
        let requests_container = container
            .map(|c| format!(",container=\"{c}\""))
            .unwrap_or_default();
        let ident = self.ident(&match container {
            Some(c) => format!("{resource}_{c}"),
            None => resource.to_string(),
        });
        match target {
            Target::Utilization(percent) => {
                self.comment(format!(
                    "{resource} usage over requests, summed over the pods, as HPA computes utilisation"
                ));
                self.metric(
                    &ident,
                    &format!(
                        "{usage} / sum(kube_pod_container_resource_requests{{namespace=\"{ns}\",pod=~\"{pods}\",resource=\"{resource}\"{requests_container}}})"
                    ),
                );
                self.rules.push(format!("track {ident} at {percent}%"));
            }
            Target::AverageValue(q) => {
                self.comment(format!("{resource} usage, summed over the pods"));
                self.metric(&ident, &usage);
                self.rules.push(format!("track {ident} per replica {q}"));
            }
            Target::Value(_) => {
                self.partial(format!("a `Value` target on resource `{resource}`: HPA allows Utilization and AverageValue"), at);
            }
        }
    }

    fn finish(self) -> Imported {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# Imported by `policyctl import` from {} {}/{} (line {}).",
            self.kind, self.namespace, self.name, self.obj.at.line
        );
        for line in &self.header {
            let _ = writeln!(text, "{line}");
        }
        let policy = format!("{}/{}", self.namespace, self.name);
        let _ = writeln!(text, "policy \"{policy}\" {{");
        for line in self
            .body
            .iter()
            .chain(&self.lets)
            .chain(&self.rules)
            .chain(&self.settings)
            .chain(&self.schedules)
        {
            let _ = writeln!(text, "  {line}");
        }
        text.push_str("}\n");
        Imported {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            policy,
            target: self.target.clone(),
            text,
            notes: self.notes,
            at: self.obj.at,
            pending: self.pending,
        }
    }
}

/// A target of a metric.
#[derive(Debug, Clone)]
enum Target {
    /// Percent of requests.
    Utilization(String),
    AverageValue(String),
    Value(String),
}

/// A query as a raw string that no `"#…` inside can end early.
fn raw(query: &str) -> String {
    let mut hashes = String::from("#");
    while query.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{}\"{hashes}", query.trim())
}

/// Seconds as the language writes them: `90s`, `5m`, `2h`.
fn duration(seconds: i64) -> String {
    match seconds {
        s if s != 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s != 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn int(node: Option<&Node>) -> Option<i64> {
    match &node?.value {
        Value::Int(i) => Some(*i),
        Value::Str(s) => s.trim().parse().ok(),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9e15 => Some(*f as i64),
        _ => None,
    }
}

/// A Kubernetes quantity (`500m`, `5`, `1.5k`, `2Gi`, `1e3`) as a `.scale` literal with the
/// same exact decimal value (binary suffixes become the language's `KiB`…`TiB`).
pub fn quantity(text: &str) -> Option<String> {
    let t = text.trim();
    let binary = [("Ki", "KiB"), ("Mi", "MiB"), ("Gi", "GiB"), ("Ti", "TiB")];
    for (suffix, unit) in binary {
        if let Some(number) = t.strip_suffix(suffix) {
            return decimal(number, 0).map(|n| format!("{n}{unit}"));
        }
    }
    let (number, shift) = match t.chars().last()? {
        'm' => (&t[..t.len() - 1], -3),
        'k' => (&t[..t.len() - 1], 3),
        'M' => (&t[..t.len() - 1], 6),
        'G' => (&t[..t.len() - 1], 9),
        'T' => (&t[..t.len() - 1], 12),
        'P' => (&t[..t.len() - 1], 15),
        'E' => (&t[..t.len() - 1], 18),
        _ => (t, 0),
    };
    let (mantissa, exponent) = match number.find(['e', 'E']) {
        Some(i) => (&number[..i], number[i + 1..].parse::<i32>().ok()?),
        None => (number, 0),
    };
    decimal(mantissa, shift + exponent)
}

/// `digits[.digits]` × 10^shift, written exactly, without a sign or exponent.
fn decimal(number: &str, shift: i32) -> Option<String> {
    let number = number.strip_prefix('+').unwrap_or(number);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .chars()
            .chain(frac_part.chars())
            .all(|c| c.is_ascii_digit())
        || shift.abs() > 30
    {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    // The decimal point stands after `point` digits.
    let point = int_part.len() as i32 + shift;
    let (int, frac) = if point <= 0 {
        (
            String::from("0"),
            format!("{}{digits}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quantities_are_exact_decimals() {
        for (q, want) in [
            ("500m", "0.5"),
            ("5", "5"),
            ("1.5k", "1500"),
            ("2Gi", "2GiB"),
            ("1e3", "1000"),
            ("0.45", "0.45"),
            ("250M", "250000000"),
            ("1m", "0.001"),
            ("100", "100"),
        ] {
            assert_eq!(quantity(q).as_deref(), Some(want), "{q}");
        }
        assert_eq!(quantity("five"), None);
        assert_eq!(quantity(""), None);
        assert_eq!(duration(300), "5m");
        assert_eq!(duration(90), "90s");
        assert_eq!(duration(0), "0s");
    }
}
