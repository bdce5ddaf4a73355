//! Offline runs of the real engine: a trace replayed tick by tick through a policy, as
//! `simulate`, `test` and `explain` need it. The simulated actuator applies every
//! decision at once. No clock: time comes from the trace.

pub mod plot;
pub mod scaletest;
pub mod shadow;
pub mod summary;
pub mod trace;

use std::fmt;

use chrono::{DateTime, Duration as TimeDelta, Utc};

use crate::engine::{self, Input, Schedules, State, Tick};
use crate::model::Policy;
pub use trace::{Row, Trace, TraceError};

/// A sample older than this counts as missing (Prometheus' lookback delta).
pub const STALE_AFTER: TimeDelta = TimeDelta::minutes(5);

/// The most ticks one replay runs (a year at 15 s is 2.1 million; the engine does
/// about 2.3 million a second). A trace whose rows lie centuries apart is refused with
/// this number rather than replayed tick by tick for hours.
pub const MAX_TICKS: i64 = 20_000_000;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Replicas at the start (default: the policy's MIN).
    pub initial: Option<u32>,
    /// Columns that hold a total over the fleet: the policy sees `total / current`.
    pub per_replica: Vec<String>,
    /// Stop after the tick at or before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Keep ticking until this instant even after the trace ends (its samples go stale).
    pub through: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    Trace(TraceError),
    /// `--per-replica` names something that is not a column.
    Option(String),
    /// The replay would run more than `MAX_TICKS` ticks.
    TooLong {
        ticks: i64,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Trace(e) => e.fmt(f),
            SimError::Option(m) => f.write_str(m),
            SimError::TooLong { ticks } => write!(
                f,
                "the replay spans {ticks} ticks of the policy's `every`; at most {MAX_TICKS} are run (end it sooner with --until, or split the trace)"
            ),
        }
    }
}

impl std::error::Error for SimError {}

/// What one tick saw and did.
pub struct TickView<'a> {
    pub at: DateTime<Utc>,
    /// The replica count before the tick's decision.
    pub current: u32,
    /// What the policy saw, one per metric (after `--per-replica` division).
    pub samples: &'a [Option<f64>],
    pub tick: &'a Tick,
}

/// For each policy metric, the trace column that feeds it.
fn columns(policy: &Policy, trace: &Trace) -> Result<Vec<usize>, TraceError> {
    let names: Vec<&str> = policy.metrics.iter().map(|m| m.name.as_str()).collect();
    for column in &trace.columns {
        if !names.contains(&column.as_str()) {
            let known = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            };
            return Err(TraceError {
                row: Some(1),
                column: Some(column.clone()),
                message: format!(
                    "unknown column: policy `{}` has no such metric (its metrics: {known})",
                    policy.name
                ),
            });
        }
    }
    names
        .iter()
        .map(|name| {
            trace
                .columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| TraceError {
                    row: Some(1),
                    column: None,
                    message: format!(
                        "missing column `{name}`: policy `{}` reads this metric",
                        policy.name
                    ),
                })
        })
        .collect()
}

/// Replay `trace` through `policy`, calling `visit` after every tick.
pub fn run(
    policy: &Policy,
    trace: &Trace,
    options: &Options,
    mut visit: impl FnMut(&TickView<'_>),
) -> Result<(), SimError> {
    let map = columns(policy, trace).map_err(SimError::Trace)?;
    let mut per_replica = vec![false; policy.metrics.len()];
    for name in &options.per_replica {
        match policy.metrics.iter().position(|m| &m.name == name) {
            Some(i) => per_replica[i] = true,
            None => {
                return Err(SimError::Option(format!(
                    "--per-replica `{name}` is not a metric of policy `{}`",
                    policy.name
                )));
            }
        }
    }
    let (Some(first), Some(last)) = (trace.rows.first(), trace.rows.last()) else {
        return Ok(());
    };
    let every = TimeDelta::from_std(policy.every).unwrap_or(TimeDelta::seconds(15));
    let end = options.through.map_or(last.at, |t| t.max(last.at));
    let end = options.until.map_or(end, |u| u.min(end));
    let ticks = (end - first.at).num_milliseconds() / every.num_milliseconds().max(1);
    if ticks > MAX_TICKS {
        return Err(SimError::TooLong { ticks });
    }

    let mut state = State::new();
    let mut schedules = Schedules::new();
    let mut current = options.initial.unwrap_or(policy.min);
    let mut samples = vec![None; policy.metrics.len()];
    let mut row = 0usize;
    let mut at = first.at;
    while at <= end {
        // The latest row at or before the tick.
        while trace.rows.get(row + 1).is_some_and(|r| r.at <= at) {
            row += 1;
        }
        let latest = &trace.rows[row];
        let fresh = at - latest.at <= STALE_AFTER;
        for (i, slot) in samples.iter_mut().enumerate() {
            let value = if fresh {
                latest.values.get(map[i]).copied().flatten()
            } else {
                None
            };
            *slot = match (value, per_replica[i]) {
                (Some(total), true) if current > 0 => Some(total / f64::from(current)),
                (value, _) => value,
            };
        }
        let tick = engine::tick(
            policy,
            &mut schedules,
            &mut state,
            &Input {
                now: at,
                current,
                samples: &samples,
            },
        );
        visit(&TickView {
            at,
            current,
            samples: &samples,
            tick: &tick,
        });
        if let Some(decision) = &tick.decision {
            current = decision.to;
        }
        at += every;
    }
    Ok(())
}
