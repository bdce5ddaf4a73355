//! What a tick found and why, as data: each rule's proposal or why it abstained, and
//! each step of §6 with the count before and after and what bound it. Words are made
//! from it only when someone reads it (`describe`, `reason`).

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{Direction, Policy, Rate, RateAmount};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Outcome {
    Proposed { replicas: u32, how: How },
    Abstained(Abstain),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum How {
    /// A `track` rule: its value, the (buffered) ratio to its target, and whether the
    /// ratio was inside the tolerance (then it proposes the current count).
    Track {
        value: f64,
        ratio: f64,
        within_tolerance: bool,
    },
    /// A `track` rule at zero replicas: `ceil(value / target)`, no tolerance.
    TrackFromZero { value: f64 },
    /// `desired = EXPR` or `scale to EXPR`: the value before rounding up.
    Value { value: f64 },
    /// `scale up/down by`.
    Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Abstain {
    /// An input of the rule is missing (or its value is not a number).
    Missing,
    ConditionFalse,
    /// The condition holds, but not yet for the whole `for` window.
    Sustaining {
        since: DateTime<Utc>,
        needed: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StepKind {
    Recommendation,
    Missing,
    Bounds,
    Stabilize,
    Schedules,
    RateLimit,
    Cooldown,
}

impl StepKind {
    /// The step's name for programs (API v1): snake_case, stable.
    pub fn key(self) -> &'static str {
        match self {
            StepKind::Recommendation => "recommendation",
            StepKind::Missing => "missing_data",
            StepKind::Bounds => "bounds",
            StepKind::Stabilize => "stabilisation",
            StepKind::Schedules => "schedules",
            StepKind::RateLimit => "rate_limits",
            StepKind::Cooldown => "cooldown",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            StepKind::Recommendation => "recommendation",
            StepKind::Missing => "missing data",
            StepKind::Bounds => "bounds",
            StepKind::Stabilize => "stabilisation",
            StepKind::Schedules => "schedules",
            StepKind::RateLimit => "rate limits",
            StepKind::Cooldown => "cooldown",
        }
    }
}

/// What a step did, in enough detail to say why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Note {
    Nothing,
    /// Step 3: the highest proposal, from this rule (index into `Policy::rules`).
    Highest {
        rule: usize,
    },
    NoProposal,
    /// Step 3 in a policy with no rules at all: the lowest count step 5 allows.
    NoRules,
    /// Step 4, `on missing hold`: no recommendation below `current`.
    Hold,
    /// Step 4, `on missing scale to N after K`, before the K-th tick.
    FallbackPending {
        tick: u32,
        after: u32,
    },
    /// Step 4: the fallback count applies.
    Fallback {
        tick: u32,
    },
    Bounds {
        min: u32,
        max: u32,
        from_schedule: bool,
    },
    Stabilize {
        lowest_up: u32,
        highest_down: u32,
        /// The policy had no recommendation history: `current` was recorded first.
        first_tick: bool,
    },
    /// Step 6 skipped: `current` is outside the bounds, the result is the nearest one.
    OutsideBounds {
        current: u32,
    },
    Floor {
        schedule: usize,
        replicas: u32,
    },
    Ceiling {
        schedule: usize,
        replicas: u32,
    },
    RateLimit {
        direction: Direction,
        limit: u32,
        by: LimitSource,
    },
    /// Step 9: the move waits `remaining` more (a schedule's floor or ceiling still applies).
    Cooldown {
        direction: Direction,
        remaining: Duration,
    },
}

/// Which limit bound a rate-limited move.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum LimitSource {
    /// The policy's own limit (index into the direction's rates), from `start` replicas.
    Rate {
        index: usize,
        start: u32,
    },
    /// One of the defaults for scaling up, `4 per 15s` (index 0) and `100% per 15s`
    /// (index 1), combined by the direction's `select`.
    Default {
        index: usize,
        start: u32,
    },
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    pub kind: StepKind,
    pub before: u32,
    pub after: u32,
    pub note: Note,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub at: DateTime<Utc>,
    pub current: u32,
    /// Indices of the metrics that were missing at this tick.
    pub missing: Vec<usize>,
    /// One per rule, in the policy's order.
    pub rules: Vec<Outcome>,
    /// Indices of the schedules active at this tick.
    pub schedules: Vec<usize>,
    pub steps: Vec<Step>,
    pub result: u32,
}

impl Explanation {
    /// Step 5's result, the tick's recommendation (what stabilisation remembers).
    pub fn recommendation(&self) -> u32 {
        self.steps
            .iter()
            .find(|s| s.kind == StepKind::Bounds)
            .map_or(self.result, |s| s.after)
    }
}

fn secs(d: Duration) -> String {
    crate::model::show_duration(d)
}

fn number(v: f64) -> String {
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn rate_text(direction: Direction, rate: &Rate) -> String {
    let amount = match rate.amount {
        RateAmount::Count(n) => n.to_string(),
        RateAmount::Percent(p) => format!("{}%", number(p * 100.0)),
    };
    format!(
        "limit {} {} per {}",
        direction.as_str(),
        amount,
        secs(rate.per)
    )
}

fn schedule_name(policy: &Policy, i: usize) -> &str {
    policy.schedules.get(i).map_or("?", |s| s.name.as_str())
}

/// One rule's outcome in words.
pub fn outcome_text(outcome: &Outcome, current: u32) -> String {
    match outcome {
        Outcome::Proposed { replicas, how } => match how {
            How::Track {
                value,
                ratio,
                within_tolerance: true,
            } => {
                format!(
                    "proposes {replicas} (value {}, ratio {} within tolerance: holds {current})",
                    number(*value),
                    number(*ratio)
                )
            }
            How::Track { value, ratio, .. } => format!(
                "proposes {replicas} (value {}, ratio {})",
                number(*value),
                number(*ratio)
            ),
            How::TrackFromZero { value } => format!(
                "proposes {replicas} (value {}, from zero replicas)",
                number(*value)
            ),
            How::Value { value } => format!("proposes {replicas} (value {})", number(*value)),
            How::Step => format!("proposes {replicas}"),
        },
        Outcome::Abstained(Abstain::Missing) => "abstains: an input is missing".to_string(),
        Outcome::Abstained(Abstain::ConditionFalse) => "abstains: condition is false".to_string(),
        Outcome::Abstained(Abstain::Sustaining { since, needed }) => {
            format!(
                "abstains: condition true since {}, needs {}",
                since.format("%Y-%m-%dT%H:%M:%SZ"),
                secs(*needed)
            )
        }
    }
}

/// One step in words.
pub fn step_text(policy: &Policy, step: &Step) -> String {
    let change = if step.before == step.after {
        format!("{}", step.after)
    } else {
        format!("{} -> {}", step.before, step.after)
    };
    let why = match step.note {
        Note::Nothing => String::new(),
        Note::Highest { rule } => format!(
            "highest proposal, from `{}`",
            policy.rules.get(rule).map_or("?", |r| r.text.as_str())
        ),
        Note::NoProposal => "no rule proposed: current count".to_string(),
        Note::NoRules => "no rules: the lowest count the bounds allow".to_string(),
        Note::Hold => "a rule's input is missing: on missing hold, no scale-down".to_string(),
        Note::FallbackPending { tick, after } => {
            format!("a rule's input is missing (tick {tick} of {after}): holding")
        }
        Note::Fallback { tick } => {
            format!("a rule's input is missing for {tick} ticks: fallback count")
        }
        Note::Bounds {
            min,
            max,
            from_schedule: false,
        } => format!("replicas {min}..{max}"),
        Note::Bounds {
            min,
            max,
            from_schedule: true,
        } => format!("replicas {min}..{max} from an active schedule"),
        Note::Stabilize {
            lowest_up,
            highest_down,
            first_tick,
        } => format!(
            "lowest recommendation of the last {}: {lowest_up}; highest of the last {}: {highest_down}{}",
            secs(policy.stabilize_up),
            secs(policy.stabilize_down),
            if first_tick {
                "; first tick: current recorded as a recommendation"
            } else {
                ""
            }
        ),
        Note::OutsideBounds { current } => {
            format!("current {current} is outside the bounds: the nearest bound at once")
        }
        Note::Floor { schedule, replicas } => format!(
            "schedule `{}` floor {replicas}",
            schedule_name(policy, schedule)
        ),
        Note::Ceiling { schedule, replicas } => format!(
            "schedule `{}` ceiling {replicas}",
            schedule_name(policy, schedule)
        ),
        Note::RateLimit {
            direction,
            limit,
            by,
        } => {
            let limits = if direction == Direction::Up {
                &policy.limits_up
            } else {
                &policy.limits_down
            };
            match by {
                LimitSource::Rate { index, start } => {
                    let text = limits
                        .rates
                        .get(index)
                        .map_or(String::from("?"), |r| rate_text(direction, r));
                    format!("`{text}` allows {limit} (from {start})")
                }
                LimitSource::Default { index, start } => {
                    let text = if index == 0 {
                        "4 per 15s"
                    } else {
                        "100% per 15s"
                    };
                    let select = if limits.select == crate::model::Select::Min {
                        "min"
                    } else {
                        "max"
                    };
                    format!(
                        "default `limit up {text}` ({select} of 4 per 15s, 100% per 15s) allows {limit} (from {start})"
                    )
                }
                LimitSource::Disabled => format!("`limit {} disabled`", direction.as_str()),
            }
        }
        Note::Cooldown {
            direction,
            remaining,
        } => {
            let cooldown = if direction == Direction::Up {
                policy.cooldown_up
            } else {
                policy.cooldown_down
            };
            format!(
                "`cooldown {} {}`: {} left",
                direction.as_str(),
                secs(cooldown),
                secs(remaining)
            )
        }
    };
    if why.is_empty() {
        change
    } else {
        format!("{change} ({why})")
    }
}

/// The full explanation, one line per rule and per step.
pub fn describe(policy: &Policy, e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "policy {} at {}: current {}",
        policy.name,
        e.at.format("%Y-%m-%dT%H:%M:%SZ"),
        e.current
    );
    if !e.missing.is_empty() {
        let names: Vec<&str> = e
            .missing
            .iter()
            .filter_map(|i| policy.metrics.get(*i))
            .map(|m| m.name.as_str())
            .collect();
        let _ = writeln!(out, "  missing: {}", names.join(", "));
    }
    if !e.schedules.is_empty() {
        let names: Vec<&str> = e
            .schedules
            .iter()
            .map(|i| schedule_name(policy, *i))
            .collect();
        let _ = writeln!(out, "  active schedules: {}", names.join(", "));
    }
    for (rule, outcome) in policy.rules.iter().zip(&e.rules) {
        let _ = writeln!(
            out,
            "  rule `{}`: {}",
            rule.text,
            outcome_text(outcome, e.current)
        );
    }
    for step in &e.steps {
        let _ = writeln!(
            out,
            "  {:<15} {}",
            format!("{}:", step.kind.title()),
            step_text(policy, step)
        );
    }
    let verdict = if e.result == e.current {
        format!("hold at {}", e.result)
    } else {
        format!("scale {} -> {}", e.current, e.result)
    };
    let _ = writeln!(out, "  decision:       {verdict}");
    out
}

/// A one-line reason for a decision or a hold. It starts with what made the result:
/// the last step that moved the count the way the decision goes (a schedule's floor,
/// the bounds), or else the rules; then every other step that changed the count, and
/// missing data or a cooldown even when they did not (they say why nothing moved).
pub fn reason(policy: &Policy, e: &Explanation) -> String {
    let rules = match e.steps.first().map(|s| s.note) {
        Some(Note::Highest { rule }) => {
            let text = policy.rules.get(rule).map_or("?", |r| r.text.as_str());
            match e.rules.get(rule) {
                Some(outcome) => format!("`{text}` {}", outcome_text(outcome, e.current)),
                None => format!("`{text}`"),
            }
        }
        _ if policy.rules.is_empty() => match e.steps.first() {
            Some(first) => format!("no rule; recommendation: {}", step_text(policy, first)),
            None => "no rule".to_string(),
        },
        _ => {
            let why: Vec<String> = policy
                .rules
                .iter()
                .zip(&e.rules)
                .map(|(rule, outcome)| {
                    format!("`{}` {}", rule.text, outcome_text(outcome, e.current))
                })
                .collect();
            format!("no proposal: {}", why.join(", "))
        }
    };
    let way = e.result.cmp(&e.current);
    let maker = e
        .steps
        .iter()
        .rposition(|s| s.after.cmp(&s.before) == way && way != std::cmp::Ordering::Equal)
        .filter(|i| *i > 0);
    let step = |s: &Step| format!("{}: {}", s.kind.title(), step_text(policy, s));
    let telling = |s: &Step| {
        s.before != s.after
            || (matches!(s.kind, StepKind::Missing | StepKind::Cooldown) && s.note != Note::Nothing)
            || matches!(s.note, Note::OutsideBounds { .. })
    };
    let mut parts = Vec::new();
    if let Some(i) = maker {
        parts.push(step(&e.steps[i]));
    }
    parts.push(rules);
    for (i, s) in e.steps.iter().enumerate().skip(1) {
        if Some(i) != maker && telling(s) {
            parts.push(step(s));
        }
    }
    parts.join("; ")
}
