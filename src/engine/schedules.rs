//! Which schedules are active at an instant, answered from intervals laid out ahead
//! of time: the calendar work (zones, DST, cron) is done once per week of ticks, not
//! once per tick. A cache of values derived from the policy alone, so the engine stays
//! a pure function of (policy, state, input).

use chrono::{DateTime, Duration as TimeDelta, Utc};

use crate::calendar::{self, Interval};
use crate::model::Policy;

/// How far ahead intervals are laid out at a time.
const SPAN: TimeDelta = TimeDelta::days(7);

#[derive(Debug, Clone, Default)]
pub struct Schedules {
    /// The instants for which `intervals` is complete: `[from, to)`.
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Per schedule, its merged occurrences overlapping `[from, to)`.
    intervals: Vec<Vec<Interval>>,
}

impl Schedules {
    pub fn new() -> Self {
        Schedules::default()
    }

    /// The indices of the schedules of `policy` active at `at`, written into `out`.
    pub fn active(&mut self, policy: &Policy, at: DateTime<Utc>, out: &mut Vec<usize>) {
        out.clear();
        if policy.schedules.is_empty() {
            return;
        }
        let covered = matches!((self.from, self.to), (Some(f), Some(t)) if f <= at && at < t);
        if !covered || self.intervals.len() != policy.schedules.len() {
            self.lay_out(policy, at);
        }
        for (i, intervals) in self.intervals.iter().enumerate() {
            // Intervals are sorted and merged: the one that may contain `at` is the
            // last one starting at or before it.
            let n = intervals.partition_point(|iv| iv.start <= at);
            if n > 0 && intervals[n - 1].contains(at) {
                out.push(i);
            }
        }
    }

    fn lay_out(&mut self, policy: &Policy, at: DateTime<Utc>) {
        let (from, to) = (at, at + SPAN);
        self.intervals = policy
            .schedules
            .iter()
            .map(|s| calendar::occurrences(&s.windows, from, to))
            .collect();
        self.from = Some(from);
        self.to = Some(to);
    }
}
