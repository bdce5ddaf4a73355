//! Semantic analysis: syntax trees of one or more files → checked policies
//! (`model::Policy`) and every diagnostic of the language reference §7. All files are
//! checked in one run, and every check runs after parsing, so one error never hides
//! another.

mod expr;
mod policy;
mod promql;
mod schedule;
mod suggest;
pub(crate) mod values;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::diagnostic::{Code, Diagnostic, Severity, Span};
use crate::model;
use crate::syntax::{self, ast};

pub use policy::RESERVED;

/// One file to check.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// "Now", for the past-schedule warning and the horizon of schedule overlaps.
    pub now: DateTime<Utc>,
    /// Metric sources whose queries are PromQL. Without a service configuration, the
    /// conventional name `prometheus`.
    pub promql_sources: Vec<String>,
    /// What the service configuration declares, when `check --config` (or `serve`)
    /// gives one: then targets and metric sources must name what exists.
    pub known: Option<Known>,
    /// Without a service configuration: judge source names by convention
    /// (`CONVENTIONAL_SOURCES`), warning of any other (`check` without `--config`).
    pub conventional_sources: bool,
}

/// The source names `check` knows without a configuration (policyctl.md, `check`).
pub const CONVENTIONAL_SOURCES: [&str; 3] = ["prometheus", "host", "file"];

/// The actuators and sources of a service configuration, as `check` needs them.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub actuators: Vec<String>,
    pub sources: Vec<(String, Queries)>,
}

/// What a source accepts as a query.
#[derive(Debug, Clone)]
pub enum Queries {
    Promql,
    /// One of these names (a host metric, a trace column).
    OneOf {
        what: &'static str,
        names: Vec<String>,
    },
}

impl Options {
    pub fn at(now: DateTime<Utc>) -> Self {
        Options {
            now,
            promql_sources: vec!["prometheus".to_string()],
            known: None,
            conventional_sources: false,
        }
    }
}

/// A policy that passed `check`, with the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPolicy {
    pub file: usize,
    pub policy: model::Policy,
}

#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Policies without errors, in file order.
    pub policies: Vec<CheckedPolicy>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
}

/// What one file gave on its own, before the checks across files.
struct FileResult {
    diagnostics: Vec<Diagnostic>,
    policies: Vec<PolicyResult>,
}

struct PolicyResult {
    name: String,
    span: Span,
    model: Option<model::Policy>,
    diagnostics: Vec<Diagnostic>,
}

fn check_file(file: usize, source: &Source, options: &Options) -> FileResult {
    let (tree, diagnostics) = syntax::parse(&source.text, file);
    let policies = tree
        .items
        .iter()
        .filter_map(|item| match item {
            ast::TopItem::Policy(p) => Some(p),
            ast::TopItem::Error(_) => None,
        })
        .map(|p| {
            let mut diagnostics = Vec::new();
            let queries_ok = check_queries(p, file, options, &mut diagnostics);
            let (lowered, lowering) = policy::lower(p, file, options);
            diagnostics.extend(lowering);
            let failed = !queries_ok || diagnostics.iter().any(|d| d.severity == Severity::Error);
            PolicyResult {
                name: p.name.value.clone(),
                span: p.name.span,
                model: lowered.filter(|_| !failed),
                diagnostics,
            }
        })
        .collect();
    FileResult {
        diagnostics,
        policies,
    }
}

/// Check every source together: policy names must be unique across all of them.
/// Files are checked on all cores; the result does not depend on how many.
pub fn check(sources: &[Source], options: &Options) -> Checked {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(sources.len())
        .max(1);
    let results: Vec<FileResult> = if threads == 1 {
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| check_file(i, s, options))
            .collect()
    } else {
        let chunk = sources.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = sources
                .chunks(chunk)
                .enumerate()
                .map(|(c, part)| {
                    scope.spawn(move || {
                        part.iter()
                            .enumerate()
                            .map(|(i, s)| check_file(c * chunk + i, s, options))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            // A panic in a worker is a bug; it surfaces as one here, as it would
            // have without threads.
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };

    let mut out = Checked::default();
    let mut names: HashMap<String, (usize, Span)> = HashMap::new();
    for (file, result) in results.into_iter().enumerate() {
        out.diagnostics.extend(result.diagnostics);
        for p in result.policies {
            if let Some((first_file, first_span)) = names.get(&p.name) {
                let elsewhere = if *first_file == file {
                    String::new()
                } else {
                    format!(" in {}", sources[*first_file].path)
                };
                out.diagnostics.push(
                    Diagnostic::new(
                        Code::DuplicatePolicy,
                        file,
                        p.span,
                        format!("policy `{}` is defined twice", p.name),
                    )
                    .label("defined again here")
                    .secondary_in(
                        *first_file,
                        *first_span,
                        format!("first defined here{elsewhere}"),
                    )
                    .help("policy names are unique across every file loaded together"),
                );
                continue;
            }
            names.insert(p.name, (file, p.span));
            out.diagnostics.extend(p.diagnostics);
            if let Some(policy) = p.model {
                out.policies.push(CheckedPolicy { file, policy });
            }
        }
    }
    out.diagnostics
        .sort_by_key(|d| (d.file, d.span().start, d.code));
    out
}

/// Syntax-check the PromQL of every `metric`; false when one does not parse.
fn check_queries(
    p: &ast::Policy,
    file: usize,
    options: &Options,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let mut ok = true;
    for stmt in &p.stmts {
        if let (ast::Stmt::Target { actuator, .. }, Some(known)) = (&stmt.node, &options.known)
            && !known.actuators.contains(&actuator.node)
        {
            ok = false;
            let names: Vec<&str> = known.actuators.iter().map(String::as_str).collect();
            diags.push(
                Diagnostic::new(
                    Code::UnknownActuator,
                    file,
                    actuator.span,
                    format!("unknown actuator `{}`", actuator.node),
                )
                .label("not in the service configuration")
                .help(suggest::help_for(
                    &actuator.node,
                    &names,
                    "declared actuators",
                    "the configuration declares no actuator; add one under `actuators`",
                )),
            );
        }
        let ast::Stmt::Metric { source, query, .. } = &stmt.node else {
            continue;
        };
        if let Some(known) = &options.known {
            match known.sources.iter().find(|(n, _)| n == &source.node) {
                None => {
                    ok = false;
                    let names: Vec<&str> = known.sources.iter().map(|(n, _)| n.as_str()).collect();
                    diags.push(
                        Diagnostic::new(
                            Code::UnknownSource,
                            file,
                            source.span,
                            format!("unknown metric source `{}`", source.node),
                        )
                        .label("not in the service configuration")
                        .help(suggest::help_for(
                            &source.node,
                            &names,
                            "declared sources",
                            "the configuration declares no source; add one under `sources`",
                        )),
                    );
                    continue;
                }
                Some((_, Queries::OneOf { what, names })) => {
                    if !names.contains(&query.value) {
                        ok = false;
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        diags.push(
                            Diagnostic::new(
                                Code::InvalidQuery,
                                file,
                                query.span,
                                format!("source `{}` has no {what} `{}`", source.node, query.value),
                            )
                            .label("unknown here")
                            .help(suggest::help_for(
                                &query.value,
                                &names,
                                "one of",
                                "this source answers no query (is its trace readable?)",
                            )),
                        );
                    }
                    continue;
                }
                Some((_, Queries::Promql)) => {}
            }
        } else if options.conventional_sources
            && !CONVENTIONAL_SOURCES.contains(&source.node.as_str())
        {
            // A source by another name: probably a typo; its query is judged as PromQL.
            let mut d = Diagnostic::new(
                Code::UnknownSource,
                file,
                source.span,
                format!("metric source `{}` is not a conventional name", source.node),
            )
            .label("no configuration declares it")
            .help(match suggest::did_you_mean(&source.node, CONVENTIONAL_SOURCES) {
                Some(typo) => format!(
                    "{typo} (a source by another name needs its service configuration: a `policyctl.ron` beside the policies, or `--config FILE`)"
                ),
                None => "the conventional sources are prometheus, host and file; declare others in a `policyctl.ron` beside the policies, or pass `--config FILE`".to_string(),
            });
            d.severity = Severity::Warning;
            diags.push(d);
        } else if !options.promql_sources.contains(&source.node) {
            continue;
        }
        // promql-parser is third-party code on user input: contain any panic.
        let result = std::panic::catch_unwind(|| promql::parse(&query.value));
        let reason = match result {
            Ok(Ok(())) => continue,
            Ok(Err(reason)) => reason,
            Err(_) => "the PromQL parser failed on this query".to_string(),
        };
        ok = false;
        diags.push(
            Diagnostic::new(Code::InvalidPromql, file, query.span, format!("invalid PromQL query: {}", reason.lines().next().unwrap_or("does not parse")))
                .label("does not parse")
                .help("check the query in Prometheus' expression browser; for quotes inside, use a raw string r#\"...\"#"),
        );
    }
    ok
}

/// Check one text on its own (tests, `fmt`'s model comparison).
pub fn check_text(text: &str, options: &Options) -> Checked {
    check(
        &[Source {
            path: "<input>".into(),
            text: text.to_string(),
        }],
        options,
    )
}
