//! Decision history: every tick's outcome in a bounded ring per policy (in memory), and
//! every decision and override in a shorter list that the state file keeps across
//! restarts. `GET /v1/policies/NAME/history`, `GET /v1/decisions` and the event stream
//! read them.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::Explanation;
use crate::model::Policy;

use super::LastTick;
use super::api;

/// How much of each policy's ticks is kept in memory: this long at its `every`.
pub const KEEP: Duration = Duration::from_secs(3600);
/// The most ticks kept per policy, whatever its `every`.
pub const MAX_TICKS: usize = 3600;
/// Decisions and override changes kept per policy in the state file.
pub const MAX_RECORDS: usize = 100;

/// One tick, compactly: a few numbers, the samples, and the reason (shared with the
/// previous tick when it says the same).
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub current: u32,
    /// Step 5's recommendation; `None` when the tick could not decide.
    pub recommendation: Option<u32>,
    /// The count the tick decided (or kept).
    pub result: u32,
    pub samples: Box<[Option<f64>]>,
    pub reason: Arc<str>,
    pub decided: bool,
    pub overridden: bool,
    pub error: bool,
}

/// The ring of one policy.
#[derive(Debug, Default)]
pub struct Ring {
    entries: VecDeque<Entry>,
}

/// The number of ticks kept for a policy ticking every `every`, over `keep`.
pub fn capacity(every: Duration, keep: Duration) -> usize {
    let every = every.as_secs_f64().max(1.0);
    ((keep.as_secs_f64() / every).ceil() as usize).min(MAX_TICKS)
}

impl Ring {
    pub fn push(&mut self, last: &LastTick, overridden: bool, keep: Duration) {
        let cap = capacity(last.policy.every, keep);
        while self.entries.len() >= cap.max(1) {
            self.entries.pop_front();
        }
        if cap == 0 {
            return;
        }
        grow(&mut self.entries, cap);
        let reason: Arc<str> = match self.entries.back() {
            Some(prev) if *prev.reason == *last.reason => prev.reason.clone(),
            _ => last.reason.clone(),
        };
        let result = match (&last.decision, &last.explanation) {
            (Some(d), _) => d.to,
            (None, Some(e)) if !overridden => e.result,
            _ => last.current,
        };
        self.entries.push_back(Entry {
            at: last.at,
            current: last.current,
            recommendation: last.explanation.as_ref().map(Explanation::recommendation),
            result,
            samples: last.samples.clone().into_boxed_slice(),
            reason,
            decided: last.decision.is_some(),
            overridden,
            error: last.error.is_some(),
        });
    }

    /// The ticks at or after `since`, oldest first, as the API gives them.
    pub fn since(&self, policy: &Policy, since: Option<DateTime<Utc>>) -> Vec<Value> {
        let start = since.map_or(0, |s| self.entries.partition_point(|e| e.at < s));
        self.entries
            .range(start..)
            .map(|e| {
                let samples: serde_json::Map<String, Value> = policy
                    .metrics
                    .iter()
                    .zip(e.samples.iter())
                    .map(|(m, v)| (m.name.clone(), json!(v)))
                    .collect();
                json!({
                    "at": api::time(e.at),
                    "current": e.current,
                    "recommendation": e.recommendation,
                    "result": e.result,
                    "samples": samples,
                    "reason": &*e.reason,
                    "decided": e.decided,
                    "overridden": e.overridden,
                    "error": e.error,
                })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A decision or an override change, kept in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub at: DateTime<Utc>,
    /// `decision`, `override_set`, `override_deleted` (borrowed: no allocation per
    /// record; a state file's own strings come back owned).
    pub kind: Cow<'static, str>,
    pub from: Option<u32>,
    pub to: Option<u32>,
    pub reason: Arc<str>,
    /// The actuator's answer: `applied`, `failed`, `dry_run`, … (decisions only).
    #[serde(default)]
    pub status: Option<Cow<'static, str>>,
    /// Who set or deleted an override (the token's name or the request's `author`).
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub forced: bool,
}

impl Record {
    pub fn to_json(&self, policy: &str) -> Value {
        json!({
            "policy": policy,
            "at": api::time(self.at),
            "kind": self.kind,
            "from": self.from,
            "to": self.to,
            "reason": self.reason,
            "status": self.status,
            "author": self.author,
            "forced": self.forced,
        })
    }
}

/// Append to a policy's records, keeping the newest `MAX_RECORDS`.
pub fn record(records: &mut VecDeque<Record>, r: Record) {
    while records.len() >= MAX_RECORDS {
        records.pop_front();
    }
    grow(records, MAX_RECORDS);
    records.push_back(r);
}

/// Room for one more, never beyond `most`: a list starts at one entry (most policies
/// of a fleet record few), and doubles up to the most it keeps, not past it.
fn grow<T>(list: &mut VecDeque<T>, most: usize) {
    if list.len() == list.capacity() {
        let target = (list.capacity() * 2).clamp(1, most.max(1));
        list.reserve_exact(target.saturating_sub(list.len()).max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_holds_its_duration_at_the_policy_every() {
        let hour = Duration::from_secs(3600);
        assert_eq!(capacity(Duration::from_secs(15), hour), 240);
        assert_eq!(capacity(Duration::from_secs(10), hour), 360);
        // Never more than MAX_TICKS, whatever the `every`; none when history is off.
        assert_eq!(capacity(Duration::from_secs(1), 2 * hour), MAX_TICKS);
        assert_eq!(capacity(Duration::from_secs(15), Duration::ZERO), 0);
    }
}
