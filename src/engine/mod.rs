//! The decision engine: (policy, state, samples, now) → (decision, new state,
//! explanation), exactly as §4–§6 of the language reference say. Pure: no clock, no
//! I/O, no async. `simulate`, `test`, `explain` and `serve` all call `tick`.

pub mod eval;
pub mod explain;
pub mod schedules;
pub mod state;

use std::time::Duration;

use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde::Serialize;

use crate::model::{
    Direction, Limits, OnMissing, Policy, RateAmount, RuleKind, Select, WhenAction,
};
use eval::{Scope, Val};
pub use explain::{Abstain, Explanation, How, LimitSource, Note, Outcome, Step, StepKind};
pub use schedules::Schedules;
pub use state::{Recommendation, ScaleEvent, State};

/// What one tick sees.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub now: DateTime<Utc>,
    /// The replica count now.
    pub current: u32,
    /// One per `Policy::metrics`, in order; `None` is a missing sample.
    pub samples: &'a [Option<f64>],
}

/// A change of replica count, to hand to the actuator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub policy: String,
    pub target: String,
    pub from: u32,
    pub to: u32,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub decision: Option<Decision>,
    pub explanation: Explanation,
}

/// The default rate limit up, when a policy sets none: `max(4 per 15s, 100% per 15s)`.
const DEFAULT_UP_WINDOW: Duration = Duration::from_secs(15);
const DEFAULT_UP_COUNT: u32 = 4;

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// "The last `d`" before `now`: the instants `t` with `now - d < t <= now`. The
/// instant `now` itself always belongs, so "the last 0s" is this tick alone.
///
/// The cutoff `now - d` is computed once: subtracting two `DateTime`s is calendar
/// arithmetic, far dearer than comparing them, and histories are read every tick.
#[derive(Clone, Copy)]
struct Window {
    now: DateTime<Utc>,
    cutoff: Option<DateTime<Utc>>,
}

impl Window {
    fn last(now: DateTime<Utc>, d: Duration) -> Window {
        Window {
            now,
            cutoff: now.checked_sub_signed(delta(d)),
        }
    }

    fn contains(self, at: DateTime<Utc>) -> bool {
        at <= self.now && (at == self.now || self.cutoff.is_none_or(|c| at > c))
    }
}

/// The `for` windows of a policy's `when` rules as its metric history shows them
/// (Prometheus' `ActiveAt` restored after a restart): `history` is one row of samples
/// per evaluation, oldest first, each like `Input::samples`. A window opens at the first
/// point of the last unbroken run of points where the condition holds, and counts from
/// `last_event` if the policy scaled since. `current` stands for the replica count at
/// every point (history does not say what it was). Other rules get `None`.
pub fn rebuild_windows(
    policy: &Policy,
    history: &[(DateTime<Utc>, Vec<Option<f64>>)],
    current: u32,
    last_event: Option<DateTime<Utc>>,
) -> Vec<Option<DateTime<Utc>>> {
    let mut windows = vec![None; policy.rules.len()];
    for (at, samples) in history {
        let mut lets: Vec<Option<Val>> = Vec::with_capacity(policy.lets.len());
        for l in &policy.lets {
            let value = eval::eval(
                &l.expr,
                &Scope {
                    metrics: samples,
                    lets: &lets,
                    current,
                },
            );
            lets.push(value);
        }
        let scope = Scope {
            metrics: samples,
            lets: &lets,
            current,
        };
        for (rule, window) in policy.rules.iter().zip(windows.iter_mut()) {
            if let RuleKind::When { cond, .. } = &rule.kind {
                match eval::boolean(cond, &scope) {
                    Some(true) => {
                        window.get_or_insert(*at);
                    }
                    _ => *window = None,
                }
            }
        }
    }
    if let Some(event) = last_event {
        for w in windows.iter_mut().flatten() {
            *w = (*w).max(event);
        }
    }
    windows
}

/// Evaluate one tick. `state` is updated in place to the state after the tick;
/// `schedules` is a cache derived from `policy` alone.
pub fn tick(
    policy: &Policy,
    schedules: &mut Schedules,
    state: &mut State,
    input: &Input<'_>,
) -> Tick {
    let now = input.now;
    let current = input.current;
    if state.windows.len() != policy.rules.len() {
        state.windows.resize(policy.rules.len(), None);
    }

    // The values of this tick: metrics, then `let`s in order.
    let metrics = input.samples;
    let missing: Vec<usize> = (0..policy.metrics.len())
        .filter(|i| metrics.get(*i).copied().flatten().is_none())
        .collect();
    let mut lets: Vec<Option<Val>> = Vec::with_capacity(policy.lets.len());
    for l in &policy.lets {
        let value = eval::eval(
            &l.expr,
            &Scope {
                metrics,
                lets: &lets,
                current,
            },
        );
        lets.push(value);
    }
    let scope = Scope {
        metrics,
        lets: &lets,
        current,
    };

    // Steps 1 and 2: proposals, with tolerance.
    let rules: Vec<Outcome> = policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| propose(policy, &rule.kind, &scope, &mut state.windows[i], now))
        .collect();

    // Step 3: the highest proposal.
    let mut steps = Vec::with_capacity(7);
    let best = rules
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Proposed { replicas, .. } => Some((*replicas, i)),
            Outcome::Abstained(_) => None,
        })
        .max_by_key(|(r, i)| (*r, std::cmp::Reverse(*i)));
    let mut value = best.map_or(current, |(r, _)| r);
    let note = best.map_or(Note::NoProposal, |(_, rule)| Note::Highest { rule });
    steps.push(Step {
        kind: StepKind::Recommendation,
        before: value,
        after: value,
        note,
    });

    // Step 4: missing data.
    let before = value;
    let mut note = Note::Nothing;
    if missing.is_empty() {
        state.missing_ticks = 0;
    } else {
        state.missing_ticks = state.missing_ticks.saturating_add(1);
        match policy.on_missing {
            OnMissing::Hold => {
                value = value.max(current);
                note = Note::Hold;
            }
            OnMissing::ScaleTo { replicas, after } if state.missing_ticks >= after => {
                value = replicas;
                note = Note::Fallback {
                    tick: state.missing_ticks,
                };
            }
            OnMissing::ScaleTo { after, .. } => {
                value = value.max(current);
                note = Note::FallbackPending {
                    tick: state.missing_ticks,
                    after,
                };
            }
        }
    }
    steps.push(Step {
        kind: StepKind::Missing,
        before,
        after: value,
        note,
    });

    // Step 5: bounds, replaced by the active schedules' `replicas A..B`.
    let mut active = Vec::new();
    schedules.active(policy, now, &mut active);
    let mut range: Option<(u32, u32)> = None;
    let mut floor: Option<(u32, usize)> = None;
    let mut ceiling: Option<(u32, usize)> = None;
    for &i in &active {
        let effect = policy.schedules[i].effect;
        if let Some((a, b)) = effect.range {
            range = Some(range.map_or((a, b), |(ra, rb)| (ra.max(a), rb.min(b))));
        }
        if let Some(f) = effect.floor
            && floor.is_none_or(|(v, _)| f > v)
        {
            floor = Some((f, i));
        }
        if let Some(c) = effect.ceiling
            && ceiling.is_none_or(|(v, _)| c < v)
        {
            ceiling = Some((c, i));
        }
    }
    let (lo, hi) = match range {
        // Capacity before cost: a range whose floor passed its ceiling keeps the floor.
        Some((a, b)) => (a, b.max(a)),
        None => (policy.min, policy.max),
    };
    let before = value;
    value = value.clamp(lo, hi);
    steps.push(Step {
        kind: StepKind::Bounds,
        before,
        after: value,
        note: Note::Bounds {
            min: lo,
            max: hi,
            from_schedule: range.is_some(),
        },
    });
    let recommendation = value;

    // Step 6: stabilisation over the recommendations of the last U and D.
    state.recommendations.push_back(Recommendation {
        at: now,
        replicas: recommendation,
    });
    let keep = Window::last(now, policy.stabilize_up.max(policy.stabilize_down));
    while state
        .recommendations
        .front()
        .is_some_and(|r| !keep.contains(r.at))
    {
        state.recommendations.pop_front();
    }
    let recent = |d: Duration| {
        let window = Window::last(now, d);
        state
            .recommendations
            .iter()
            .filter(move |r| window.contains(r.at))
            .map(|r| r.replicas)
    };
    let lowest_up = recent(policy.stabilize_up).min().unwrap_or(recommendation);
    let highest_down = recent(policy.stabilize_down)
        .max()
        .unwrap_or(recommendation);
    let before = value;
    value = current.max(lowest_up).min(highest_down);
    steps.push(Step {
        kind: StepKind::Stabilize,
        before,
        after: value,
        note: Note::Stabilize {
            lowest_up,
            highest_down,
        },
    });

    // Step 7: schedules: the lowest ceiling, then the highest floor (the floor wins).
    let before = value;
    let mut note = Note::Nothing;
    if let Some((c, schedule)) = ceiling
        && value > c
    {
        value = c;
        note = Note::Ceiling {
            schedule,
            replicas: c,
        };
    }
    if let Some((f, schedule)) = floor
        && value < f
    {
        value = f;
        note = Note::Floor {
            schedule,
            replicas: f,
        };
    }
    steps.push(Step {
        kind: StepKind::Schedules,
        before,
        after: value,
        note,
    });
    let scheduled = (floor.map(|(f, _)| f), ceiling.map(|(c, _)| c));

    // Step 8: rate limits.
    let limits = RateLimits::new(policy, state, current, now);
    let before = value;
    let (limited, note) = limits.apply(value);
    value = limited;
    steps.push(Step {
        kind: StepKind::RateLimit,
        before,
        after: value,
        note,
    });

    // Step 9: cooldowns. A move a schedule forces is held back by rate limits only.
    let before = value;
    let mut note = Note::Nothing;
    let direction = match value.cmp(&current) {
        std::cmp::Ordering::Greater => Some(Direction::Up),
        std::cmp::Ordering::Less => Some(Direction::Down),
        std::cmp::Ordering::Equal => None,
    };
    if let (Some(direction), Some(last)) = (direction, state.last_event) {
        let cooldown = if direction == Direction::Up {
            policy.cooldown_up
        } else {
            policy.cooldown_down
        };
        let since = now - last;
        if !cooldown.is_zero() && since < delta(cooldown) {
            let remaining = (delta(cooldown) - since).to_std().unwrap_or_default();
            note = Note::Cooldown {
                direction,
                remaining,
            };
            // What the schedules alone demand of the current count still happens.
            let (f, c) = scheduled;
            let mut forced = current;
            if let Some(c) = c {
                forced = forced.min(c);
            }
            if let Some(f) = f {
                forced = forced.max(f);
            }
            value = limits.apply(forced).0;
        }
    }
    steps.push(Step {
        kind: StepKind::Cooldown,
        before,
        after: value,
        note,
    });

    let explanation = Explanation {
        at: now,
        current,
        missing,
        rules,
        schedules: active,
        steps,
        result: value,
    };

    // Step 10: the decision, which becomes a scale event.
    let decision = (value != current).then(|| {
        state.events.push_back(ScaleEvent {
            at: now,
            from: current,
            to: value,
        });
        state.last_event = Some(now);
        for window in state.windows.iter_mut().flatten() {
            *window = now;
        }
        Decision {
            policy: policy.name.clone(),
            target: policy.target.id.clone(),
            from: current,
            to: value,
            at: now,
            reason: explain::reason(policy, &explanation),
            dry_run: policy.dry_run,
        }
    });
    let keep = Window::last(now, longest_limit_window(policy));
    while state.events.front().is_some_and(|e| !keep.contains(e.at)) {
        state.events.pop_front();
    }
    Tick {
        decision,
        explanation,
    }
}

/// Step 1 and 2 for one rule. `window` is the rule's `for` window.
fn propose(
    policy: &Policy,
    rule: &RuleKind,
    scope: &Scope<'_>,
    window: &mut Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Outcome {
    let current = scope.current;
    let buffered = |v: f64| v * (1.0 + policy.buffer);
    let missing = Outcome::Abstained(Abstain::Missing);
    let track = |v: f64, target: f64, per_replica: bool| {
        let v = buffered(v);
        if current == 0 {
            // From zero there is no ratio and no tolerance.
            return Outcome::Proposed {
                replicas: eval::replicas(eval::ceil(v / target)),
                how: How::TrackFromZero { value: v },
            };
        }
        let c = f64::from(current);
        let ratio = if per_replica {
            v / (target * c)
        } else {
            v / target
        };
        let within_tolerance = (ratio - 1.0).abs() <= policy.tolerance + eval::NOISE;
        if !ratio.is_finite() {
            return Outcome::Abstained(Abstain::Missing);
        }
        let replicas = if within_tolerance {
            current
        } else {
            eval::replicas(eval::ceil(c * ratio))
        };
        Outcome::Proposed {
            replicas,
            how: How::Track {
                value: v,
                ratio,
                within_tolerance,
            },
        }
    };
    match rule {
        RuleKind::TrackAt { value, target } => match eval::number(value, scope) {
            Some(v) => track(v, *target, false),
            None => missing,
        },
        RuleKind::TrackPerReplica { value, target } => match eval::number(value, scope) {
            Some(v) => track(v, *target, true),
            None => missing,
        },
        RuleKind::Desired { value } => match eval::number(value, scope) {
            Some(v) => {
                let v = buffered(v);
                Outcome::Proposed {
                    replicas: eval::replicas(eval::ceil(v)),
                    how: How::Value { value: v },
                }
            }
            None => missing,
        },
        RuleKind::When {
            cond,
            sustain,
            action,
        } => {
            match eval::boolean(cond, scope) {
                Some(true) => {}
                Some(false) => {
                    *window = None;
                    return Outcome::Abstained(Abstain::ConditionFalse);
                }
                None => {
                    *window = None;
                    return missing;
                }
            }
            let opened = *window.get_or_insert(now);
            if let Some(needed) = sustain
                && opened
                    > now
                        .checked_sub_signed(delta(*needed))
                        .unwrap_or(DateTime::<Utc>::MIN_UTC)
            {
                return Outcome::Abstained(Abstain::Sustaining {
                    since: opened,
                    needed: *needed,
                });
            }
            let c = f64::from(current);
            let (replicas, how) = match action {
                WhenAction::UpBy(n) => (current.saturating_add(*n), How::Step),
                WhenAction::DownBy(n) => (current.saturating_sub(*n), How::Step),
                WhenAction::UpByPercent(p) => (
                    current.saturating_add(eval::replicas(eval::ceil(c * p))),
                    How::Step,
                ),
                WhenAction::DownByPercent(p) => (
                    current.saturating_sub(eval::replicas(eval::ceil(c * p))),
                    How::Step,
                ),
                WhenAction::To(e) => match eval::number(e, scope) {
                    Some(v) => (eval::replicas(eval::ceil(v)), How::Value { value: v }),
                    None => return missing,
                },
            };
            Outcome::Proposed { replicas, how }
        }
    }
}

/// The rate limits of step 8 for one tick, both directions.
struct RateLimits {
    current: u32,
    up: (u32, Note),
    down: (u32, Note),
}

impl RateLimits {
    fn new(policy: &Policy, state: &State, current: u32, now: DateTime<Utc>) -> Self {
        // `start = current - added_in_last(D) + removed_in_last(D)`, from this policy's
        // own scale events.
        let start = |d: Duration| -> u32 {
            let (mut added, mut removed) = (0i64, 0i64);
            let window = Window::last(now, d);
            for e in state.events.iter().filter(|e| window.contains(e.at)) {
                let change = i64::from(e.to) - i64::from(e.from);
                if change > 0 {
                    added += change
                } else {
                    removed -= change
                }
            }
            u32::try_from((i64::from(current) - added + removed).max(0)).unwrap_or(u32::MAX)
        };
        let up = limit(&policy.limits_up, Direction::Up, current, &start);
        let down = limit(&policy.limits_down, Direction::Down, current, &start);
        RateLimits { current, up, down }
    }

    fn apply(&self, value: u32) -> (u32, Note) {
        if value > self.current && value > self.up.0 {
            (self.up.0.max(self.current), self.up.1)
        } else if value < self.current && value < self.down.0 {
            (self.down.0.min(self.current), self.down.1)
        } else {
            (value, Note::Nothing)
        }
    }
}

/// The limit of one direction and the note that names it. Up: the highest count
/// allowed; down: the lowest.
fn limit(
    limits: &Limits,
    direction: Direction,
    current: u32,
    start: &dyn Fn(Duration) -> u32,
) -> (u32, Note) {
    let up = direction == Direction::Up;
    if limits.disabled {
        return (
            current,
            Note::RateLimit {
                direction,
                limit: current,
                by: LimitSource::Disabled,
            },
        );
    }
    if limits.rates.is_empty() {
        if !up {
            return (0, Note::Nothing);
        }
        let s = start(DEFAULT_UP_WINDOW);
        let allowed = s.saturating_add(DEFAULT_UP_COUNT).max(s.saturating_mul(2));
        return (
            allowed,
            Note::RateLimit {
                direction,
                limit: allowed,
                by: LimitSource::Default { start: s },
            },
        );
    }
    let candidates = limits.rates.iter().enumerate().map(|(index, rate)| {
        let s = start(rate.per);
        let fs = f64::from(s);
        let allowed = match (up, rate.amount) {
            (true, RateAmount::Count(n)) => s.saturating_add(n),
            (true, RateAmount::Percent(p)) => eval::replicas(eval::ceil(fs * (1.0 + p))),
            (false, RateAmount::Count(n)) => s.saturating_sub(n),
            (false, RateAmount::Percent(p)) => eval::replicas(eval::trunc(fs * (1.0 - p))),
        };
        (allowed, index, s)
    });
    // Up: a higher limit is more permissive; down: a lower one.
    let permissive = |a: &(u32, usize, u32)| if up { a.0 } else { u32::MAX - a.0 };
    let chosen = match limits.select {
        Select::Max => candidates.max_by_key(permissive),
        Select::Min => candidates.min_by_key(permissive),
    };
    match chosen {
        Some((allowed, index, s)) => (
            allowed,
            Note::RateLimit {
                direction,
                limit: allowed,
                by: LimitSource::Rate { index, start: s },
            },
        ),
        None => (if up { u32::MAX } else { 0 }, Note::Nothing),
    }
}

/// How long scale events must be kept: the longest window a rate limit reads.
fn longest_limit_window(policy: &Policy) -> Duration {
    let rates = policy
        .limits_up
        .rates
        .iter()
        .chain(&policy.limits_down.rates)
        .map(|r| r.per);
    rates
        .chain([DEFAULT_UP_WINDOW])
        .max()
        .unwrap_or(DEFAULT_UP_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Options, check_text};
    use chrono::TimeZone;

    fn policy(text: &str) -> Policy {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 22, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let checked = check_text(text, &Options::at(now));
        assert_eq!(checked.errors(), 0, "{:#?}", checked.diagnostics);
        checked
            .policies
            .into_iter()
            .next()
            .map(|c| c.policy)
            .unwrap_or_else(|| unreachable!())
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn windows_rebuilt_from_history_open_at_the_last_unbroken_run() {
        let p = policy(
            "policy \"p\" {\n  target k8s \"p\"\n  replicas 1..9\n  every 1m\n  metric q = prometheus \"q\"\n  track q per replica 10\n  when q > 100 for 5m scale up by 1\n  when q < 5 for 5m scale down by 1\n}\n",
        );
        let point = |m: u32, v: Option<f64>| (at(12, m), vec![v]);
        // True, broken by a missing sample, then true again from 12:03.
        let history = [
            point(0, Some(200.0)),
            point(1, Some(200.0)),
            point(2, None),
            point(3, Some(150.0)),
            point(4, Some(300.0)),
            point(5, Some(120.0)),
        ];
        let windows = rebuild_windows(&p, &history, 2, None);
        assert_eq!(windows, vec![None, Some(at(12, 3)), None]);
        // A scale event after the run opened: the window counts from it.
        let windows = rebuild_windows(&p, &history, 2, Some(at(12, 4)));
        assert_eq!(windows, vec![None, Some(at(12, 4)), None]);
        // The last point is false: no window.
        let mut closed = history.to_vec();
        closed.push(point(6, Some(50.0)));
        assert_eq!(
            rebuild_windows(&p, &closed, 2, None),
            vec![None, None, None]
        );
    }

    #[test]
    fn dry_run_decisions_are_marked() {
        let p =
            policy("policy \"p\" {\n target t \"x\"\n replicas 1..10\n dry-run\n desired = 5\n}");
        let tick = tick(
            &p,
            &mut Schedules::new(),
            &mut State::new(),
            &Input {
                now: at(9, 0),
                current: 1,
                samples: &[],
            },
        );
        let decision = tick.decision.unwrap_or_else(|| unreachable!("no decision"));
        assert!(decision.dry_run);
        assert_eq!(
            (decision.from, decision.to, decision.target.as_str()),
            (1, 5, "x")
        );
    }

    #[test]
    fn a_floor_above_a_ceiling_wins() {
        // `check` refuses such schedules when they can overlap; the engine must still
        // put capacity before cost if a model carries them.
        let mut p = policy(
            "policy \"p\" {\n target t \"x\"\n replicas 1..10\n desired = 5\n stabilize down 0s\n\
             schedule \"a\" {\n on daily from 08:00 to 18:00 in \"UTC\"\n replicas at least 2\n }\n\
             schedule \"b\" {\n on daily from 08:00 to 18:00 in \"UTC\"\n replicas at most 9\n }\n}",
        );
        p.schedules[0].effect.floor = Some(7);
        p.schedules[1].effect.ceiling = Some(3);
        let tick = tick(
            &p,
            &mut Schedules::new(),
            &mut State::new(),
            &Input {
                now: at(9, 0),
                current: 5,
                samples: &[],
            },
        );
        assert_eq!(tick.explanation.result, 7);
    }

    #[test]
    fn a_scale_event_restarts_every_open_window() {
        let p = policy(
            "policy \"p\" {\n target t \"x\"\n replicas 1..10\n metric m = prometheus \"m\"\n\
             when m > 1 for 1m scale up by 1\n when m > 0 for 10m scale up by 2\n}",
        );
        let mut state = State::new();
        let mut schedules = Schedules::new();
        let mut current = 1;
        for minute in 0..=1 {
            let input = Input {
                now: at(9, minute),
                current,
                samples: &[Some(5.0)],
            };
            if let Some(d) = tick(&p, &mut schedules, &mut state, &input).decision {
                current = d.to;
            }
        }
        assert_eq!(current, 2, "the 1m window fired once");
        assert_eq!(
            state.windows,
            vec![Some(at(9, 1)), Some(at(9, 1))],
            "both windows count from the event"
        );
    }
}
