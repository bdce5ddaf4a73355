//! `simulate`, `test` and `explain`: loading the policy and the trace, and the output
//! of each. The runs themselves are `policyctl::sim`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use policyctl::check::{self, Options as CheckOptions};
use policyctl::engine::explain;
use policyctl::model::Policy;
use policyctl::sim::{self, Options, plot, scaletest};
use serde_json::json;

use super::files::{self, Loaded};
use super::report::{self, Format, Shown};

pub const OK: u8 = 0;
pub const FOUND_WANTING: u8 = 1;
pub const USAGE_OR_IO: u8 = 2;

/// A failure with its exit code, to print as `error: ...`.
pub struct Failure(pub u8, pub String);

impl Failure {
    fn io(message: String) -> Failure {
        Failure(USAGE_OR_IO, message)
    }

    fn input(message: String) -> Failure {
        Failure(FOUND_WANTING, message)
    }
}

/// The checked policies of one file; its diagnostics printed when it has errors.
pub fn load_policies(path: &Path) -> Result<Vec<Policy>, Failure> {
    let source = match files::load(path, 0) {
        Loaded::Unreadable(e) => return Err(Failure::io(e)),
        Loaded::Text(source, Some(problem)) => {
            let shown = [Shown {
                path: source.path.clone(),
                text: source.text,
            }];
            eprint!("{}", report::render(Format::Human, &shown, &[problem], 1));
            return Err(Failure::input(format!(
                "`{}` cannot be used",
                shown[0].path
            )));
        }
        Loaded::Text(source, None) => source,
    };
    let checked = check::check(std::slice::from_ref(&source), &CheckOptions::at(Utc::now()));
    if checked.errors() > 0 {
        let shown = [Shown {
            path: source.path.clone(),
            text: source.text.clone(),
        }];
        let errors: Vec<_> = checked
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == policyctl::diagnostic::Severity::Error)
            .collect();
        eprint!("{}", report::render(Format::Human, &shown, &errors, 1));
        return Err(Failure::input(format!(
            "`{}` has errors; run `policyctl check` on it",
            source.path
        )));
    }
    Ok(checked.policies.into_iter().map(|c| c.policy).collect())
}

fn pick(policies: Vec<Policy>, name: Option<&str>, path: &Path) -> Result<Policy, Failure> {
    let names = || {
        policies
            .iter()
            .map(|p| format!("`{}`", p.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => {
            let listed = names();
            policies
                .into_iter()
                .find(|p| p.name == name)
                .ok_or_else(|| {
                    Failure(
                        USAGE_OR_IO,
                        format!(
                            "`{}` has no policy `{name}` (it has {listed})",
                            path.display()
                        ),
                    )
                })
        }
        None if policies.len() == 1 => policies
            .into_iter()
            .next()
            .ok_or_else(|| Failure::input("no policy".into())),
        None if policies.is_empty() => Err(Failure::input(format!(
            "`{}` holds no policy",
            path.display()
        ))),
        None => Err(Failure(
            USAGE_OR_IO,
            format!(
                "`{}` holds several policies ({}): pick one with --policy",
                path.display(),
                names()
            ),
        )),
    }
}

fn load_trace(path: &Path) -> Result<sim::Trace, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::io(format!("cannot read `{}`: {e}", path.display())))?;
    sim::trace::parse(&text).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

/// What `simulate` and `explain` both need: a policy, a trace, and how to start.
#[derive(clap::Args)]
pub struct Replay {
    pub policy_file: PathBuf,
    /// CSV: `time,METRIC,...`; RFC 3339 times; an empty cell is a missing sample.
    #[arg(long)]
    pub trace: PathBuf,
    /// The policy to run, when the file holds several.
    #[arg(long)]
    pub policy: Option<String>,
    /// Replicas at the start (default: the policy's MIN).
    #[arg(long)]
    pub initial: Option<u32>,
    /// A column that is a total over the fleet: the policy sees total / current.
    #[arg(long = "per-replica", value_name = "NAME")]
    pub per_replica: Vec<String>,
}

impl Replay {
    /// The checked policy, the parsed trace, and the options, up to `until` if given.
    fn prepare(
        &self,
        until: Option<DateTime<Utc>>,
    ) -> Result<(Policy, sim::Trace, Options), Failure> {
        let policy = pick(
            load_policies(&self.policy_file)?,
            self.policy.as_deref(),
            &self.policy_file,
        )?;
        let trace = load_trace(&self.trace)?;
        let options = Options {
            initial: self.initial,
            per_replica: self.per_replica.clone(),
            until,
            through: until,
        };
        Ok((policy, trace, options))
    }
}

pub struct SimulateArgs {
    pub replay: Replay,
    pub json: bool,
    pub all_ticks: bool,
    pub plot: Option<PathBuf>,
}

pub fn simulate(args: &SimulateArgs) -> Result<u8, Failure> {
    let (policy, trace, options) = args.replay.prepare(None)?;

    let mut out = String::new();
    let mut points = Vec::new();
    let (mut ticks, mut ups, mut downs) = (0usize, 0usize, 0usize);
    let (mut lowest, mut highest) = (u32::MAX, 0u32);
    if !args.json {
        let _ = writeln!(out, "{:<22} {:>5} {:>5}  reason", "time", "from", "to");
    }
    sim::run(&policy, &trace, &options, |view| {
        ticks += 1;
        let e = &view.tick.explanation;
        lowest = lowest.min(e.result);
        highest = highest.max(e.result);
        match e.result.cmp(&view.current) {
            std::cmp::Ordering::Greater => ups += 1,
            std::cmp::Ordering::Less => downs += 1,
            std::cmp::Ordering::Equal => {}
        }
        if args.plot.is_some() {
            let recommendation = e.steps.iter().find(|s| s.kind == policyctl::engine::StepKind::Bounds).map_or(e.result, |s| s.after);
            points.push(plot::Point {
                at: view.at,
                samples: view.samples.to_vec(),
                recommendation,
                replicas: e.result,
                scheduled: !e.schedules.is_empty(),
            });
        }
        if view.tick.decision.is_none() && !args.all_ticks {
            return;
        }
        let reason = match &view.tick.decision {
            Some(d) => d.reason.clone(),
            None => explain::reason(&policy, e),
        };
        let at = view.at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        if args.json {
            let line = json!({"at": at, "policy": policy.name, "from": view.current, "to": e.result, "reason": reason});
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "{at:<22} {:>5} {:>5}  {reason}", view.current, e.result);
        }
    })
    .map_err(|e| Failure::input(format!("{}: {e}", args.replay.trace.display())))?;
    if !args.json {
        let range = if ticks == 0 {
            "-".to_string()
        } else {
            format!("{lowest}..{highest}")
        };
        let _ = writeln!(
            out,
            "{ticks} ticks, {} decisions ({ups} up, {downs} down), replicas {range}",
            ups + downs
        );
    }
    print!("{out}");
    if let Some(path) = &args.plot {
        let names: Vec<String> = policy.metrics.iter().map(|m| m.name.clone()).collect();
        let from = points.first().map_or(String::new(), |p| {
            format!(", from {}", p.at.format("%Y-%m-%d %H:%M UTC"))
        });
        let svg = plot::svg(&format!("policy {}{from}", policy.name), &names, &points)
            .map_err(|e| Failure::io(format!("cannot draw the plot: {e}")))?;
        std::fs::write(path, svg)
            .map_err(|e| Failure::io(format!("cannot write `{}`: {e}", path.display())))?;
    }
    Ok(OK)
}

pub struct ExplainArgs {
    pub replay: Replay,
    pub at: DateTime<Utc>,
}

pub fn explain(args: &ExplainArgs) -> Result<u8, Failure> {
    let (policy, trace, options) = args.replay.prepare(Some(args.at))?;
    let mut last = None;
    sim::run(&policy, &trace, &options, |view| {
        last = Some(view.tick.explanation.clone())
    })
    .map_err(|e| Failure::input(format!("{}: {e}", args.replay.trace.display())))?;
    let Some(explanation) = last else {
        return Err(Failure::input(format!(
            "no tick at or before {}: the trace starts later",
            args.at.format("%Y-%m-%dT%H:%M:%SZ")
        )));
    };
    print!("{}", explain::describe(&policy, &explanation));
    Ok(OK)
}

pub fn test(paths: &[PathBuf]) -> Result<u8, Failure> {
    let found = files::collect(paths, ".scaletest.ron").map_err(Failure::io)?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &found {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::io(format!("cannot read `{shown}`: {e}")))?;
        let file = match scaletest::parse(&text) {
            Ok(file) => file,
            Err(e) => {
                println!("FAIL {shown}: not a valid test file: {e}");
                failed += 1;
                continue;
            }
        };
        let policy_path = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&file.policy_file);
        let policies = match load_policies(&policy_path) {
            Ok(policies) => policies,
            Err(Failure(_, message)) => {
                println!("FAIL {shown}: {message}");
                failed += file.tests.len().max(1);
                continue;
            }
        };
        for case in &file.tests {
            let result = scaletest::run_case(case, &policies);
            if result.failures.is_empty() {
                println!("ok   {shown}: {}", result.name);
                passed += 1;
            } else {
                println!("FAIL {shown}: {}", result.name);
                for failure in &result.failures {
                    println!("       {failure}");
                }
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 { FOUND_WANTING } else { OK })
}
