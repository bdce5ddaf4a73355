//! The JSON shapes of API v1, as `docs/openapi.json` writes them down: snake_case
//! fields, one shape per concept (`{"kind": …}` for every variant), durations as
//! seconds plus a display string, bounds as `{min, max}`, rules with their index and
//! text, schedules by name. The engine's own types stay Rust-shaped; this module is the
//! only place that turns them into the API.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::eval::Val;
use crate::engine::{Abstain, Explanation, How, LimitSource, Note, Outcome, explain};
use crate::model::{Expr, Policy, RuleKind, WhenAction, show_duration};

use super::persist::Override;

/// A duration: seconds for programs, the policy language's spelling for people.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub seconds: f64,
    pub display: String,
}

pub fn span(d: Duration) -> Span {
    Span {
        seconds: d.as_secs_f64(),
        display: show_duration(d),
    }
}

/// What the actuator answered to a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// `applied`, `failed`, `dry_run` (never sent), `not_applied` (the state file
    /// cannot be written), `no_actuator`.
    pub status: &'static str,
    /// Attempts made (for `applied` and `failed`).
    pub attempts: Option<u32>,
    /// The plugin's message, or why it was not sent.
    pub message: String,
    /// For `failed`: the typed failure (`timeout`, `denied`, `trap`, …).
    pub failure: Option<&'static str>,
}

/// The policy itself: what does not change from tick to tick.
pub fn policy(policy: &Policy, file: String, manual: Option<&Override>) -> Value {
    let rules: Vec<Value> = policy
        .rules
        .iter()
        .enumerate()
        .map(|(index, r)| json!({ "index": index, "text": r.text }))
        .collect();
    let schedules: Vec<Value> = policy
        .schedules
        .iter()
        .enumerate()
        .map(|(index, s)| json!({ "index": index, "name": s.name }))
        .collect();
    let metrics: Vec<Value> = policy
        .metrics
        .iter()
        .map(|m| json!({ "name": m.name, "source": m.source, "query": m.query }))
        .collect();
    json!({
        "name": policy.name,
        "file": file,
        "target": { "actuator": policy.target.actuator, "id": policy.target.id },
        "replicas": { "min": policy.min, "max": policy.max },
        "every": span(policy.every),
        "dry_run": policy.dry_run,
        "metrics": metrics,
        "rules": rules,
        "schedules": schedules,
        "override": manual,
    })
}

fn collect_names(expr: &Expr, metrics: &mut Vec<usize>, lets: &mut Vec<usize>) {
    match expr {
        Expr::Metric(i) if !metrics.contains(i) => metrics.push(*i),
        Expr::Let(i) if !lets.contains(i) => lets.push(*i),
        Expr::Neg(e) | Expr::Not(e) => collect_names(e, metrics, lets),
        Expr::Binary(_, l, r) => {
            collect_names(l, metrics, lets);
            collect_names(r, metrics, lets);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| collect_names(a, metrics, lets)),
        _ => {}
    }
}

/// Every metric and `let` a rule reads, with its value at the tick (`null`: missing).
fn reads(
    policy: &Policy,
    rule: &RuleKind,
    samples: &[Option<f64>],
    lets: &[Option<Val>],
) -> Vec<Value> {
    let (mut m, mut l) = (Vec::new(), Vec::new());
    match rule {
        RuleKind::TrackAt { value, .. }
        | RuleKind::TrackPerReplica { value, .. }
        | RuleKind::Desired { value } => collect_names(value, &mut m, &mut l),
        RuleKind::When { cond, action, .. } => {
            collect_names(cond, &mut m, &mut l);
            if let WhenAction::To(e) = action {
                collect_names(e, &mut m, &mut l);
            }
        }
    }
    let metric = m.into_iter().map(|i| {
        json!({
            "name": policy.metrics.get(i).map_or("?", |x| x.name.as_str()),
            "kind": "metric",
            "value": samples.get(i).copied().flatten(),
        })
    });
    let derived = l.into_iter().map(|i| {
        let value = match lets.get(i).copied().flatten() {
            Some(Val::Num(n)) => json!(n),
            Some(Val::Bool(b)) => json!(b),
            None => Value::Null,
        };
        json!({
            "name": policy.lets.get(i).map_or("?", |x| x.name.as_str()),
            "kind": "let",
            "value": value,
        })
    });
    metric.chain(derived).collect()
}

fn outcome(policy: &Policy, o: &Outcome) -> Value {
    let raw = |v: f64| v / (1.0 + policy.buffer);
    match o {
        Outcome::Proposed { replicas, how } => match how {
            How::Track {
                value,
                ratio,
                within_tolerance,
            } => json!({
                "kind": "proposed", "replicas": replicas, "how": "track",
                "value": value, "raw_value": raw(*value), "ratio": ratio,
                "within_tolerance": within_tolerance,
            }),
            How::TrackFromZero { value } => json!({
                "kind": "proposed", "replicas": replicas, "how": "track_from_zero",
                "value": value, "raw_value": raw(*value),
            }),
            How::Value { value } => json!({
                "kind": "proposed", "replicas": replicas, "how": "value", "value": value,
            }),
            How::Step => json!({ "kind": "proposed", "replicas": replicas, "how": "step" }),
        },
        Outcome::Abstained(Abstain::Missing) => json!({ "kind": "abstained", "why": "missing" }),
        Outcome::Abstained(Abstain::ConditionFalse) => {
            json!({ "kind": "abstained", "why": "condition_false" })
        }
        Outcome::Abstained(Abstain::Sustaining { since, needed }) => json!({
            "kind": "abstained", "why": "sustaining", "since": since,
            "needed_s": needed.as_secs_f64(), "needed": show_duration(*needed),
        }),
    }
}

fn note(policy: &Policy, n: &Note) -> Value {
    let schedule = |i: usize| policy.schedules.get(i).map_or("?", |s| s.name.as_str());
    match *n {
        Note::Nothing => json!({ "kind": "nothing" }),
        Note::Highest { rule } => json!({ "kind": "highest", "rule": rule }),
        Note::NoProposal => json!({ "kind": "no_proposal" }),
        Note::NoRules => json!({ "kind": "no_rules" }),
        Note::Hold => json!({ "kind": "hold" }),
        Note::FallbackPending { tick, after } => {
            json!({ "kind": "fallback_pending", "tick": tick, "after": after })
        }
        Note::Fallback { tick } => json!({ "kind": "fallback", "tick": tick }),
        Note::Bounds {
            min,
            max,
            from_schedule,
        } => json!({ "kind": "bounds", "min": min, "max": max, "from_schedule": from_schedule }),
        Note::Stabilize {
            lowest_up,
            highest_down,
            first_tick,
        } => json!({
            "kind": "stabilize", "lowest_up": lowest_up, "highest_down": highest_down,
            "first_tick": first_tick,
            "up_window": span(policy.stabilize_up), "down_window": span(policy.stabilize_down),
        }),
        Note::OutsideBounds { current } => json!({ "kind": "outside_bounds", "current": current }),
        Note::Floor {
            schedule: s,
            replicas,
        } => {
            json!({ "kind": "floor", "schedule": schedule(s), "replicas": replicas })
        }
        Note::Ceiling {
            schedule: s,
            replicas,
        } => {
            json!({ "kind": "ceiling", "schedule": schedule(s), "replicas": replicas })
        }
        Note::RateLimit {
            direction,
            limit,
            by,
        } => {
            let (by, index, start) = match by {
                LimitSource::Rate { index, start } => ("rate", Some(index), Some(start)),
                LimitSource::Default { index, start } => ("default", Some(index), Some(start)),
                LimitSource::Disabled => ("disabled", None, None),
            };
            json!({
                "kind": "rate_limit", "direction": direction.as_str(), "limit": limit,
                "by": by, "index": index, "start": start,
            })
        }
        Note::Cooldown {
            direction,
            remaining,
        } => json!({
            "kind": "cooldown", "direction": direction.as_str(),
            "remaining": span(remaining),
        }),
    }
}

/// One tick's explanation as the API gives it: rules with what they read, steps with
/// a typed note and their words.
pub fn explanation(policy: &Policy, e: &Explanation, samples: &[Option<f64>]) -> Value {
    // The `let`s are not kept: recomputed from the tick's samples, as the engine did.
    let lets = crate::engine::let_values(policy, samples, e.current);
    let rules: Vec<Value> = policy
        .rules
        .iter()
        .zip(&e.rules)
        .enumerate()
        .map(|(index, (rule, o))| {
            json!({
                "index": index,
                "text": rule.text,
                "outcome": outcome(policy, o),
                "reads": reads(policy, &rule.kind, samples, &lets),
                "words": explain::outcome_text(o, e.current),
            })
        })
        .collect();
    let steps: Vec<Value> = e
        .steps
        .iter()
        .map(|s| {
            json!({
                "step": s.kind.key(),
                "title": s.kind.title(),
                "before": s.before,
                "after": s.after,
                "note": note(policy, &s.note),
                "words": explain::step_text(policy, s),
            })
        })
        .collect();
    let schedules: Vec<&str> = e
        .schedules
        .iter()
        .filter_map(|i| policy.schedules.get(*i).map(|s| s.name.as_str()))
        .collect();
    json!({
        "rules": rules,
        "schedules": schedules,
        "steps": steps,
        "result": e.result,
    })
}

/// A decision as the API and the history give it.
pub fn decision(d: &crate::engine::Decision) -> Value {
    json!({
        "policy": d.policy, "target": d.target, "from": d.from, "to": d.to,
        "at": d.at, "reason": d.reason, "dry_run": d.dry_run,
    })
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A policy in shadow mode at one tick: its count and the other autoscaler's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Shadow {
    pub source: String,
    pub query: String,
    /// The count this policy wants (never sent: shadowed policies run as dry-run).
    pub ours: u32,
    /// The other's desired count; `null` when its query has no sample.
    pub other: Option<f64>,
    /// `ours - other`.
    pub difference: Option<f64>,
}
