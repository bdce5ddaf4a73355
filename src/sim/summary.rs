//! What a replay adds up to, for backtests and `--compare`: scale events,
//! replica-hours, time spent above each `track` target, and flaps (a scale reversed
//! within 10 minutes).

use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde::Serialize;

use crate::engine::{How, Outcome};
use crate::model::{Policy, RuleKind};

use super::TickView;

/// A scale reversed within this long is a flap.
pub const FLAP_WINDOW: TimeDelta = TimeDelta::minutes(10);

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub ticks: usize,
    pub ups: usize,
    pub downs: usize,
    /// Replicas × time, each tick's count held until the next tick.
    pub replica_hours: f64,
    /// For each `track` rule (by its text), the hours its ratio to target was above 1.
    pub above_target: Vec<(String, f64)>,
    pub flaps: usize,
    pub lowest: Option<u32>,
    pub highest: Option<u32>,
}

/// Feed it every tick of a replay, then read `summary`.
pub struct Totals {
    summary: Summary,
    tracks: Vec<usize>,
    step_hours: f64,
    last_event: Option<(DateTime<Utc>, bool)>,
}

impl Totals {
    pub fn new(policy: &Policy) -> Totals {
        let tracks: Vec<usize> = policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                matches!(
                    r.kind,
                    RuleKind::TrackAt { .. } | RuleKind::TrackPerReplica { .. }
                )
            })
            .map(|(i, _)| i)
            .collect();
        Totals {
            summary: Summary {
                above_target: tracks
                    .iter()
                    .map(|i| (policy.rules[*i].text.clone(), 0.0))
                    .collect(),
                ..Summary::default()
            },
            tracks,
            step_hours: policy.every.as_secs_f64() / 3600.0,
            last_event: None,
        }
    }

    pub fn add(&mut self, view: &TickView<'_>) {
        let s = &mut self.summary;
        let e = &view.tick.explanation;
        s.ticks += 1;
        s.replica_hours += f64::from(e.result) * self.step_hours;
        s.lowest = Some(s.lowest.map_or(e.result, |l| l.min(e.result)));
        s.highest = Some(s.highest.map_or(e.result, |h| h.max(e.result)));
        for (slot, rule) in self.tracks.iter().enumerate() {
            if let Some(Outcome::Proposed {
                how: How::Track { ratio, .. },
                ..
            }) = e.rules.get(*rule)
                && *ratio > 1.0
            {
                s.above_target[slot].1 += self.step_hours;
            }
        }
        if e.result != view.current {
            let up = e.result > view.current;
            if up {
                s.ups += 1;
            } else {
                s.downs += 1;
            }
            if let Some((at, was_up)) = self.last_event
                && was_up != up
                && view.at - at <= FLAP_WINDOW
            {
                s.flaps += 1;
            }
            self.last_event = Some((view.at, up));
        }
    }

    pub fn summary(self) -> Summary {
        self.summary
    }
}
