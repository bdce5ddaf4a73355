//! `simulate`, `test` and `explain`: loading the policy and the trace, and the output
//! of each. The runs themselves are `policyctl::sim`.

use policyctl::input::{caps, read_text};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use policyctl::check::{self, Options as CheckOptions};
use policyctl::engine::explain;
use policyctl::model::Policy;
use policyctl::sim::summary::{Summary, Totals};
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
    pub fn io(message: String) -> Failure {
        Failure(USAGE_OR_IO, message)
    }

    pub fn input(message: String) -> Failure {
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
    let text = read_text(path, caps::TRACE)
        .map_err(|e| Failure::io(format!("cannot read `{}`: {e}", path.display())))?;
    sim::trace::parse(&text).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

/// What `simulate` and `explain` both need: a policy, a trace, and how to start.
#[derive(clap::Args)]
pub struct Replay {
    pub policy_file: PathBuf,
    /// CSV: `time,METRIC,...`; RFC 3339 times; an empty cell is a missing sample.
    #[arg(
        long,
        required_unless_present = "prometheus",
        conflicts_with = "prometheus"
    )]
    pub trace: Option<PathBuf>,
    /// Backtest: fetch every metric's history from this Prometheus (range queries).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// How much history to replay, back from `--end` (e.g. `7d`, `12h`).
    #[arg(long, default_value = "7d", value_parser = parse_span)]
    pub since: std::time::Duration,
    /// The end of the history (RFC 3339; default now).
    #[arg(long, requires = "prometheus")]
    pub end: Option<DateTime<Utc>>,
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

/// `7d`, `12h`, `90m`, `30s`, `2w`.
pub fn parse_span(text: &str) -> Result<std::time::Duration, String> {
    // One duration syntax everywhere, with its upper bound (100 years).
    policyctl::sim::scaletest::parse_duration(text)
}

impl Replay {
    /// Where the trace came from, for messages.
    pub fn source_name(&self) -> String {
        match (&self.trace, &self.prometheus) {
            (Some(t), _) => t.display().to_string(),
            (None, Some(url)) => url.clone(),
            (None, None) => "<no trace>".into(),
        }
    }

    /// The trace: the CSV file, or the policy's metrics fetched from Prometheus.
    fn trace(&self, policy: &Policy) -> Result<sim::Trace, Failure> {
        if let Some(path) = &self.trace {
            return load_trace(path);
        }
        let Some(url) = &self.prometheus else {
            return Err(Failure::io("give --trace FILE or --prometheus URL".into()));
        };
        let end = self.end.unwrap_or_else(Utc::now);
        let since = chrono::Duration::from_std(self.since)
            .map_err(|_| Failure::io("--since is too long".into()))?;
        let every = policy.every.as_secs().max(1) as i64;
        // Ticks on multiples of `every`, as `serve` runs them.
        let start = end
            .checked_sub_signed(since)
            .ok_or_else(|| Failure::io("--since reaches before the year -262143".into()))?
            .timestamp();
        let start = DateTime::from_timestamp(start - start.rem_euclid(every), 0)
            .ok_or_else(|| Failure::io("--since reaches before 1970".into()))?;
        let source =
            policyctl::serve::sources::Source::prometheus(url, std::time::Duration::from_secs(60))
                .map_err(Failure::io)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::io(format!("cannot start the async runtime: {e}")))?;
        runtime
            .block_on(policyctl::serve::sources::history(
                &source, policy, start, end,
            ))
            .map_err(|e| Failure::io(format!("cannot fetch history from {url}: {e}")))
    }

    /// The checked policy, the parsed trace, and the options, up to `until` if given.
    pub fn prepare(
        &self,
        until: Option<DateTime<Utc>>,
    ) -> Result<(Policy, sim::Trace, Options), Failure> {
        let policy = pick(
            load_policies(&self.policy_file)?,
            self.policy.as_deref(),
            &self.policy_file,
        )?;
        let trace = self.trace(&policy)?;
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
    /// A second version of the policy, run on the same history.
    pub compare: Option<PathBuf>,
}

fn summarise(
    policy: &Policy,
    trace: &sim::Trace,
    options: &Options,
    replay: &Replay,
) -> Result<Summary, Failure> {
    let mut totals = Totals::new(policy);
    sim::run(policy, trace, options, |view| totals.add(view))
        .map_err(|e| Failure::input(format!("{}: {e}", replay.source_name())))?;
    Ok(totals.summary())
}

fn hours(h: f64) -> String {
    format!("{h:.1} h")
}

/// The backtest summary, one column per policy version.
fn summary_table(columns: &[(String, Summary)]) -> String {
    let mut out2 = String::new();
    let _ = write!(out2, "{:<34}", "summary");
    for (name, _) in columns {
        let _ = write!(out2, " {name:>22}");
    }
    out2.push('\n');
    let mut lines = vec![out2];
    let mut push = |label: String, cells: Vec<String>| {
        let mut l = format!("{label:<34}");
        for c in cells {
            let _ = write!(l, " {c:>22}");
        }
        l.push('\n');
        lines.push(l);
    };
    push(
        "scale events (up/down)".into(),
        columns
            .iter()
            .map(|(_, s)| format!("{} ({}/{})", s.ups + s.downs, s.ups, s.downs))
            .collect(),
    );
    push(
        "replica-hours".into(),
        columns
            .iter()
            .map(|(_, s)| format!("{:.1}", s.replica_hours))
            .collect(),
    );
    push(
        "flaps (reversed within 10m)".into(),
        columns.iter().map(|(_, s)| s.flaps.to_string()).collect(),
    );
    push(
        "replicas".into(),
        columns
            .iter()
            .map(|(_, s)| match (s.lowest, s.highest) {
                (Some(l), Some(h)) => format!("{l}..{h}"),
                _ => "-".into(),
            })
            .collect(),
    );
    let mut targets: Vec<String> = Vec::new();
    for (_, s) in columns {
        for (t, _) in &s.above_target {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
    }
    for t in targets {
        let label = format!("above `{t}`");
        let label = if label.chars().count() > 34 {
            format!("{}…`", label.chars().take(32).collect::<String>())
        } else {
            label
        };
        push(
            label,
            columns
                .iter()
                .map(|(_, s)| {
                    s.above_target
                        .iter()
                        .find(|(x, _)| *x == t)
                        .map_or("-".into(), |(_, h)| hours(*h))
                })
                .collect(),
        );
    }
    lines.concat()
}

pub fn simulate(args: &SimulateArgs) -> Result<u8, Failure> {
    let (policy, trace, options) = args.replay.prepare(None)?;
    let backtest = args.replay.prometheus.is_some() || args.compare.is_some();
    let mut columns = Vec::new();
    if backtest {
        columns.push((
            args.replay.policy_file.display().to_string(),
            summarise(&policy, &trace, &options, &args.replay)?,
        ));
    }
    if let Some(other_file) = &args.compare {
        // The policy of the same name, or the file's only one (docs/serve.md).
        let others = load_policies(other_file)?;
        let wanted = args
            .replay
            .policy
            .as_deref()
            .unwrap_or(policy.name.as_str());
        let name = (others.len() != 1 || others.iter().any(|p| p.name == wanted)).then_some(wanted);
        let other = pick(others, name, other_file)?;
        // The same history: fetched again only for metrics the first version lacks.
        let other_trace = if other
            .metrics
            .iter()
            .all(|m| trace.columns.contains(&m.name))
        {
            trace.clone()
        } else {
            args.replay.trace(&other)?
        };
        columns.push((
            other_file.display().to_string(),
            summarise(&other, &other_trace, &options, &args.replay)?,
        ));
    }

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
            let recommendation = e.recommendation();
            points.push(plot::Point {
                at: view.at,
                samples: view.samples.to_vec(),
                recommendation,
                replicas: e.result,
                schedules: e.schedules.clone(),
                other: None,
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
    .map_err(|e| Failure::input(format!("{}: {e}", args.replay.source_name())))?;
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
        if backtest {
            out.push('\n');
            out.push_str(&summary_table(&columns));
        }
    } else if backtest {
        for (file, summary) in &columns {
            let _ = writeln!(out, "{}", json!({"file": file, "summary": summary}));
        }
    }
    print!("{out}");
    if let Some(path) = &args.plot {
        let from = points.first().map_or(String::new(), |p| {
            format!(", from {}", p.at.format("%Y-%m-%d %H:%M UTC"))
        });
        let svg = plot::svg(&format!("policy {}{from}", policy.name), &policy, &points)
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
    .map_err(|e| Failure::input(format!("{}: {e}", args.replay.source_name())))?;
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
        let text = read_text(path, caps::SCALETEST)
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
