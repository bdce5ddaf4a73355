//! Policy unit tests: `.scaletest.ron` files, as promtool's rule tests are for alerts.
//! Each names a policy file and holds cases: input series in promtool's expanding
//! notation, a start, an interval, an initial count, and the replica counts (and,
//! optionally, words of the reason) expected at given offsets.
//!
//! ```ron
//! (
//!     policy_file: "membrane-api.scale",
//!     tests: [(
//!         name: "a CPU spike doubles the fleet within a minute",
//!         start: "2026-03-02T09:00:00Z",
//!         interval: "15s",
//!         initial: Some(2),
//!         series: { "cpu": "0.5x8 1.0x20" },
//!         expect: [(at: "1m", replicas: 2), (at: "3m", replicas: 4, reason: Some("track cpu"))],
//!     )],
//! )
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde::Deserialize;

use super::trace::Sample;
use super::{Options, Row, STALE_AFTER, Trace, trace};
use crate::engine::explain;
use crate::model::Policy;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The `.scale` file under test, relative to the test file.
    pub policy_file: String,
    pub tests: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// Which policy of the file; needed when it holds several.
    #[serde(default)]
    pub policy: Option<String>,
    /// RFC 3339: the time of each series' first sample and of the first tick.
    pub start: String,
    /// Time between two samples of a series, e.g. `"15s"`.
    pub interval: String,
    /// Replicas before the first tick (default: the policy's MIN).
    #[serde(default)]
    pub initial: Option<u32>,
    /// Metric name → series in promtool's expanding notation.
    pub series: BTreeMap<String, String>,
    /// Series that are totals over the fleet (`simulate --per-replica`).
    #[serde(default)]
    pub per_replica: Vec<String>,
    pub expect: Vec<Expect>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Offset from `start`, e.g. `"5m"`: the replica count after the last tick at or
    /// before it.
    pub at: String,
    pub replicas: u32,
    /// Words the tick's reason must contain.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The longest duration a test or a command line may give: 100 years.
const MAX_DURATION_SECS: f64 = 36_500.0 * 86_400.0;

/// `90s`, `5m`, `1h30m`, `250ms`, `2d`, `2w`, at most 100 years.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration (e.g. `15s`, `5m`, `1h30m`)");
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit..];
    }
    if total > MAX_DURATION_SECS {
        return Err(format!(
            "`{text}` is longer than the longest duration allowed, 36500d (100 years)"
        ));
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// The result of one case: every expectation that failed, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub failures: Vec<String>,
}

/// Run one case against the policies of its file.
pub fn run_case(case: &Case, policies: &[Policy]) -> CaseResult {
    let failures = match run_case_inner(case, policies) {
        Ok(failures) => failures,
        Err(problem) => vec![problem],
    };
    CaseResult {
        name: case.name.clone(),
        failures,
    }
}

fn run_case_inner(case: &Case, policies: &[Policy]) -> Result<Vec<String>, String> {
    let policy =
        match (&case.policy, policies) {
            (Some(name), _) => policies
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| format!("the policy file has no policy `{name}`"))?,
            (None, [only]) => only,
            (None, _) => return Err(
                "the policy file holds several policies: name one with `policy: Some(\"NAME\")`"
                    .into(),
            ),
        };
    let start = DateTime::parse_from_rfc3339(&case.start)
        .map_err(|_| format!("start `{}` is not an RFC 3339 time", case.start))?
        .with_timezone(&Utc);
    let interval =
        TimeDelta::from_std(parse_duration(&case.interval)?).map_err(|e| e.to_string())?;
    if interval <= TimeDelta::zero() {
        return Err("interval must be above zero".into());
    }
    let trace = series_trace(&case.series, start, interval)?;
    let mut targets = Vec::with_capacity(case.expect.len());
    for e in &case.expect {
        let offset = TimeDelta::from_std(parse_duration(&e.at)?).map_err(|e| e.to_string())?;
        targets.push(
            start
                .checked_add_signed(offset)
                .ok_or_else(|| format!("`at: {}` falls after the year 262143", e.at))?,
        );
    }
    let through = targets.iter().max().copied();
    let options = Options {
        initial: case.initial,
        per_replica: case.per_replica.clone(),
        until: None,
        through,
    };

    // For each expectation, the last tick at or before its instant.
    let mut seen: Vec<Option<(DateTime<Utc>, u32, String)>> = vec![None; targets.len()];
    super::run(policy, &trace, &options, |view| {
        for (slot, target) in seen.iter_mut().zip(&targets) {
            if view.at <= *target {
                let result = view.tick.explanation.result;
                *slot = Some((
                    view.at,
                    result,
                    explain::reason(policy, &view.tick.explanation),
                ));
            }
        }
    })
    .map_err(|e| e.to_string())?;

    let mut failures = Vec::new();
    for ((e, target), seen) in case.expect.iter().zip(&targets).zip(seen) {
        let when = format!("at {} ({})", e.at, target.format("%Y-%m-%dT%H:%M:%SZ"));
        let Some((_, replicas, reason)) = seen else {
            failures.push(format!("{when}: no tick ran by then"));
            continue;
        };
        if replicas != e.replicas {
            failures.push(format!(
                "{when}: expected {} replicas, got {replicas}: {reason}",
                e.replicas
            ));
        } else if let Some(words) = &e.reason
            && !reason.contains(words.as_str())
        {
            failures.push(format!(
                "{when}: expected the reason to mention `{words}`, it was: {reason}"
            ));
        }
    }
    Ok(failures)
}

/// The series as a trace, read as promtool reads them (policyctl.md, `test`): a
/// sample stays visible until a newer one, a `stale` marker, or `STALE_AFTER` has
/// passed; `_` adds no sample. Rows stand at every sample and at every instant a
/// sample stops being visible, so that the replay sees each sample for exactly as long
/// as Prometheus would.
pub fn series_trace(
    series: &BTreeMap<String, String>,
    start: DateTime<Utc>,
    interval: TimeDelta,
) -> Result<Trace, String> {
    let columns: Vec<String> = series.keys().cloned().collect();
    let expanded: Vec<Vec<Sample>> = series
        .iter()
        .map(|(name, s)| trace::expand(s).map_err(|e| format!("series `{name}`: {e}")))
        .collect::<Result<_, _>>()?;
    let time = |i: usize| {
        i32::try_from(i)
            .ok()
            .and_then(|i| interval.checked_mul(i))
            .and_then(|offset| start.checked_add_signed(offset))
            .ok_or_else(|| format!("sample {i} of the series falls after the year 262143"))
    };
    // Past the lookback, by the smallest step chrono knows.
    let expiry = STALE_AFTER + TimeDelta::nanoseconds(1);
    let mut instants = vec![start];
    for samples in &expanded {
        for (i, s) in samples.iter().enumerate() {
            match s {
                Sample::Value(_) => {
                    let at = time(i)?;
                    instants.push(at);
                    instants.push(at + expiry);
                }
                Sample::Stale => instants.push(time(i)?),
                Sample::Omitted => {}
            }
        }
    }
    instants.sort_unstable();
    instants.dedup();
    // Per column, the index of its next sample not yet passed, and the last one seen.
    let mut next = vec![0usize; expanded.len()];
    let mut last: Vec<Option<(DateTime<Utc>, Option<f64>)>> = vec![None; expanded.len()];
    let mut rows = Vec::with_capacity(instants.len());
    for at in instants {
        let mut values = Vec::with_capacity(expanded.len());
        for (c, samples) in expanded.iter().enumerate() {
            while next[c] < samples.len() && time(next[c])? <= at {
                match samples[next[c]] {
                    Sample::Value(v) => last[c] = Some((time(next[c])?, Some(v))),
                    Sample::Stale => last[c] = Some((time(next[c])?, None)),
                    Sample::Omitted => {}
                }
                next[c] += 1;
            }
            values.push(
                last[c]
                    .filter(|(t, _)| at - *t <= STALE_AFTER)
                    .and_then(|(_, v)| v),
            );
        }
        rows.push(Row { at, values });
    }
    Ok(Trace { columns, rows })
}

pub fn parse(text: &str) -> Result<TestFile, String> {
    ron::from_str(text).map_err(|e| e.to_string())
}
