//! prometheus-adapter's rules (`--prometheus-templates FILE`): how a cluster turns
//! Prometheus series into the `Pods`, `Object` and `External` metrics an HPA reads. Given
//! a metric name, the rule that serves it gives its PromQL (`metricsQuery` with
//! `<<.Series>>`, `<<.LabelMatchers>>` and `<<.GroupBy>>` filled in).

use regex::Regex;

use super::yaml::{Loc, Node};

/// One discovery rule of the adapter's configuration.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The series' name when `seriesQuery` names it (`http_requests_total{…}`).
    series: Option<String>,
    /// `{__name__=~"…"}` in `seriesQuery`.
    series_pattern: Option<Regex>,
    matches: Regex,
    /// `name.as`, with `$1`/`${1}` for the first group (`$0` the whole name).
    rename: String,
    metrics_query: String,
    /// The label that names each resource (`namespace`, `pod`, `ingress`, …).
    overrides: Vec<(String, String)>,
    /// `resources.template` (`<<.Resource>>` or `kube_<<.Resource>>`).
    template: Option<String>,
    pub at: Loc,
}

/// `rules` (custom metrics) and `externalRules` of one adapter configuration.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub custom: Vec<Rule>,
    pub external: Vec<Rule>,
}

/// A rule that cannot be used, and where.
#[derive(Debug, Clone)]
pub struct RuleError {
    pub message: String,
    pub at: Loc,
}

impl Rules {
    /// Read the adapter configuration's `rules` and `externalRules`.
    pub fn from_documents(docs: &[Node]) -> Result<Rules, RuleError> {
        let mut rules = Rules::default();
        for doc in docs {
            // The configuration itself, or a ConfigMap that carries it as `config.yaml`.
            for (key, list) in [
                ("rules", &mut rules.custom),
                ("externalRules", &mut rules.external),
            ] {
                if let Some(items) = doc.get(key) {
                    for item in items.items() {
                        list.push(Rule::from_node(item)?);
                    }
                }
            }
        }
        Ok(rules)
    }

    /// The PromQL of metric `name`, with these label matchers, grouped by `group_by`.
    pub fn query(
        &self,
        external: bool,
        name: &str,
        matchers: &Matchers,
        group_by: Option<&str>,
    ) -> Option<(String, Loc)> {
        let list = if external {
            &self.external
        } else {
            &self.custom
        };
        // A rule that names its series is exact; one with a pattern of names is only a
        // guess of a series that may exist, so it comes second.
        let named = list.iter().filter(|r| r.series.is_some());
        let patterns = list.iter().filter(|r| r.series.is_none());
        named
            .chain(patterns)
            .find_map(|rule| rule.series_for(name).map(|s| (rule, s)))
            .map(|(rule, series)| (rule.render(&series, matchers, group_by), rule.at))
    }
}

/// What the HPA selects: the object's namespace, the resource it names (`pod` with a
/// name pattern, `ingress` with a name), and the metric's own label selector.
#[derive(Debug, Clone, Default)]
pub struct Matchers {
    pub namespace: Option<String>,
    /// Resource kind (lowercase, singular) and an equality or a regex on its name.
    pub resource: Option<(String, NameMatch)>,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum NameMatch {
    Is(String),
    Like(String),
}

impl Rule {
    fn from_node(node: &Node) -> Result<Rule, RuleError> {
        let err = |message: String, at: Loc| RuleError { message, at };
        let text = |key: &str| node.get(key).and_then(Node::scalar);
        let series_query = text("seriesQuery")
            .ok_or_else(|| err("an adapter rule without `seriesQuery`".into(), node.at))?;
        let metrics_query = text("metricsQuery")
            .ok_or_else(|| err("an adapter rule without `metricsQuery`".into(), node.at))?;
        let name = node.get("name");
        let matches = name
            .and_then(|n| n.get("matches"))
            .and_then(Node::scalar)
            .unwrap_or_else(|| "^(.*)$".into());
        let matches = Regex::new(&matches).map_err(|e| {
            err(
                format!("`name.matches` is not a regular expression: {e}"),
                name.map_or(node.at, |n| n.at),
            )
        })?;
        let rename = name
            .and_then(|n| n.get("as"))
            .and_then(Node::scalar)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                if matches.captures_len() > 1 {
                    "$1".into()
                } else {
                    "$0".into()
                }
            });
        let resources = node.get("resources");
        let overrides = resources
            .and_then(|r| r.get("overrides"))
            .map(|o| {
                o.entries()
                    .iter()
                    .filter_map(|(label, _, v)| {
                        v.get("resource")
                            .and_then(Node::scalar)
                            .map(|r| (singular(&r), label.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let template = resources
            .and_then(|r| r.get("template"))
            .and_then(Node::scalar);
        let (series, series_pattern) = parse_series_query(&series_query);
        Ok(Rule {
            series,
            series_pattern,
            matches,
            rename,
            metrics_query,
            overrides,
            template,
            at: node.at,
        })
    }

    /// The series this rule turns into metric `name`, if it does.
    fn series_for(&self, name: &str) -> Option<String> {
        if let Some(series) = &self.series {
            return (self.renamed(series).as_deref() == Some(name)).then(|| series.clone());
        }
        let pattern = self.series_pattern.as_ref()?;
        // Undo `as`: its text around the first group is fixed, the group is the rest;
        // then put the group back into `matches` where its `(.*)` stands.
        let (before, after) = split_group(&self.rename)?;
        let group = name.strip_prefix(&before)?.strip_suffix(&after)?;
        let source = self.matches.as_str();
        let open = source.find("(.*)").or_else(|| source.find("(.+)"))?;
        let unescape = |s: &str| {
            s.trim_start_matches('^')
                .trim_end_matches('$')
                .replace('\\', "")
        };
        let series = format!(
            "{}{group}{}",
            unescape(&source[..open]),
            unescape(&source[open + 4..])
        );
        (pattern.is_match(&series) && self.renamed(&series).as_deref() == Some(name))
            .then_some(series)
    }

    fn renamed(&self, series: &str) -> Option<String> {
        let caps = self.matches.captures(series)?;
        let mut out = String::new();
        caps.expand(&self.rename, &mut out);
        Some(out)
    }

    fn label_for(&self, resource: &str) -> String {
        if let Some((_, label)) = self.overrides.iter().find(|(r, _)| r == resource) {
            return label.clone();
        }
        match &self.template {
            Some(t) => t
                .replace("<<.Resource>>", resource)
                .replace("<<.Group>>", ""),
            None => resource.to_string(),
        }
    }

    fn render(&self, series: &str, m: &Matchers, group_by: Option<&str>) -> String {
        let mut matchers = Vec::new();
        if let Some(ns) = &m.namespace {
            matchers.push(format!(
                "{}=\"{}\"",
                self.label_for("namespace"),
                escape(ns)
            ));
        }
        if let Some((kind, name)) = &m.resource {
            let label = self.label_for(kind);
            matchers.push(match name {
                NameMatch::Is(n) => format!("{label}=\"{}\"", escape(n)),
                NameMatch::Like(re) => format!("{label}=~\"{}\"", escape(re)),
            });
        }
        for (k, v) in &m.labels {
            matchers.push(format!("{k}=\"{}\"", escape(v)));
        }
        let group = group_by.map(|r| self.label_for(r)).unwrap_or_default();
        self.metrics_query
            .replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", &matchers.join(","))
            .replace("<<.GroupBy>>", &group)
            .trim()
            .to_string()
    }
}

/// `pods` → `pod`: the adapter accepts either.
fn singular(resource: &str) -> String {
    let r = resource
        .split('.')
        .next()
        .unwrap_or(resource)
        .to_ascii_lowercase();
    match r.strip_suffix('s') {
        Some(s) if !r.ends_with("ss") => s.to_string(),
        _ => r,
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `name{…}` → the name; `{__name__=~"re", …}` → the pattern.
fn parse_series_query(query: &str) -> (Option<String>, Option<Regex>) {
    let q = query.trim();
    let name: String = q
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    if !name.is_empty() {
        return (Some(name), None);
    }
    let pattern = q.find("__name__=~").and_then(|i| {
        let rest = q[i + "__name__=~".len()..].trim_start();
        let quote = rest.chars().next()?;
        let body = &rest[1..];
        let end = body.find(quote)?;
        // PromQL's regex matchers are anchored.
        Regex::new(&format!("^(?:{})$", &body[..end])).ok()
    });
    (None, pattern)
}

/// `${1}_per_second` → (``, `_per_second`); `$1` → (``, ``).
fn split_group(rename: &str) -> Option<(String, String)> {
    for token in ["${1}", "$1"] {
        if let Some(i) = rename.find(token) {
            return Some((
                rename[..i].to_string(),
                rename[i + token.len()..].to_string(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const CONFIG: &str = r#"
rules:
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: ^container_(.*)_seconds_total$
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)
- seriesQuery: 'http_requests_total{kubernetes_namespace!="",kubernetes_pod_name!=""}'
  resources:
    overrides:
      kubernetes_namespace: {resource: "namespace"}
      kubernetes_pod_name: {resource: "pod"}
  name:
    matches: "^(.*)_total$"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_messages_ready{namespace!=""}'
  resources:
    template: <<.Resource>>
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
"#;

    fn rules() -> Rules {
        Rules::from_documents(&super::super::yaml::documents(CONFIG).unwrap()).unwrap()
    }

    #[test]
    fn a_named_series_with_a_rename() {
        let m = Matchers {
            namespace: Some("shop".into()),
            resource: Some(("pod".into(), NameMatch::Like("web-.*".into()))),
            labels: vec![],
        };
        let (q, _) = rules()
            .query(false, "http_requests_per_second", &m, Some("pod"))
            .unwrap();
        assert_eq!(
            q,
            r#"sum(rate(http_requests_total{kubernetes_namespace="shop",kubernetes_pod_name=~"web-.*"}[2m])) by (kubernetes_pod_name)"#
        );
        assert!(
            rules()
                .query(true, "http_requests_per_second", &m, None)
                .is_none()
        );
    }

    #[test]
    fn a_pattern_of_series_is_inverted() {
        let m = Matchers {
            namespace: Some("shop".into()),
            resource: Some(("pod".into(), NameMatch::Like("web-.*".into()))),
            labels: vec![],
        };
        let (q, _) = rules().query(false, "cpu_usage", &m, Some("pod")).unwrap();
        assert_eq!(
            q,
            r#"sum(rate(container_cpu_usage_seconds_total{namespace="shop",pod=~"web-.*"}[5m])) by (pod)"#
        );
    }

    #[test]
    fn external_rules_with_a_template() {
        let m = Matchers {
            namespace: Some("shop".into()),
            resource: None,
            labels: vec![("queue".into(), "orders".into())],
        };
        let (q, _) = rules()
            .query(true, "queue_messages_ready", &m, None)
            .unwrap();
        assert_eq!(
            q,
            r#"sum(queue_messages_ready{namespace="shop",queue="orders"}) by ()"#
        );
    }
}
