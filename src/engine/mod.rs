//! The decision engine: (policy, state, samples, now) → (decision, new state,
//! explanation), exactly as §4–§6 of the language reference say. Pure: no clock, no
//! I/O, no async. `simulate`, `test`, `explain` and `serve` all call `tick`.

pub mod eval;
pub mod explain;
pub mod schedules;
pub mod state;

use std::time::Duration;

use chrono::{DateTime, Duration as TimeDelta, NaiveTime, Timelike, Utc};
use serde::Serialize;

use crate::model::{
    Direction, Limits, OnMissing, Policy, Rate, RateAmount, RuleKind, Select, WhenAction,
};
use eval::{Scope, Val};
pub use explain::{Abstain, Explanation, How, LimitSource, Note, Outcome, Step, StepKind, Steps};
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
        // Most windows end the same UTC day they start: then the cutoff is a
        // time-of-day subtraction, without calendar arithmetic. (`naive_utc`: the
        // `Timelike` methods of a `DateTime` apply its offset, calendar work again.)
        let naive = now.naive_utc();
        let (secs, nanos) = (
            naive.time().num_seconds_from_midnight(),
            naive.time().nanosecond(),
        );
        let same_day = u32::try_from(d.as_secs())
            .ok()
            .filter(|d_secs| *d_secs <= secs && d.subsec_nanos() <= nanos && nanos < 1_000_000_000)
            .and_then(|d_secs| {
                NaiveTime::from_num_seconds_from_midnight_opt(
                    secs - d_secs,
                    nanos - d.subsec_nanos(),
                )
            });
        let cutoff = match same_day {
            Some(time) => Some(naive.date().and_time(time).and_utc()),
            None => now.checked_sub_signed(delta(d)),
        };
        Window { now, cutoff }
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
        let lets = let_values(policy, samples, current);
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
///
/// Each step of §6 of the language reference is one function below, named for it, in
/// the reference's order.
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
    let lets = let_values(policy, metrics, current);
    let scope = Scope {
        metrics,
        lets: &lets,
        current,
    };

    let rules: Vec<Outcome> = policy
        .rules
        .iter()
        .zip(state.windows.iter_mut())
        .map(|(rule, window)| {
            let outcome = proposal(policy, &rule.kind, &scope, window, now);
            tolerance(policy, outcome, current)
        })
        .collect();

    let mut active = Vec::new();
    schedules.active(policy, now, &mut active);
    let effects = Effects::of(policy, &active);
    let (lo, hi) = effects.bounds(policy);
    // §6 step 5: a count outside the bounds goes to the nearest bound at once.
    let outside = (current < lo || current > hi).then(|| current.clamp(lo, hi));

    let mut steps = Steps::new();
    let value = recommendation(policy, &rules, current, lo, &mut steps);
    let value = missing_data(policy, state, &rules, current, value, &mut steps);
    let value = bounds(value, lo, hi, effects.range.is_some(), &mut steps);
    let value = stabilisation(policy, state, now, current, value, outside, &mut steps);
    let value = schedule_limits(&effects, value, &mut steps);
    let limits = RateLimits::new(policy, state, current, now);
    let value = rate_limits(&limits, value, outside.is_some(), &mut steps);
    let value = cooldown(
        policy,
        state,
        now,
        current,
        value,
        (&effects, &limits),
        outside.is_some(),
        &mut steps,
    );

    let explanation = Explanation {
        at: now,
        current,
        missing,
        rules,
        schedules: active,
        steps,
        result: value,
    };
    let decision = decision(policy, state, &explanation);
    Tick {
        decision,
        explanation,
    }
}

/// The value of every `let` of `policy` at one tick, in definition order.
pub fn let_values(policy: &Policy, metrics: &[Option<f64>], current: u32) -> Vec<Option<Val>> {
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
    lets
}

/// The active schedules' effects combined (§5): the highest floor, the lowest ceiling,
/// the highest A and the lowest B, each with the schedule that set it.
struct Effects {
    range: Option<(u32, u32)>,
    floor: Option<(u32, usize)>,
    ceiling: Option<(u32, usize)>,
}

impl Effects {
    fn of(policy: &Policy, active: &[usize]) -> Effects {
        let mut e = Effects {
            range: None,
            floor: None,
            ceiling: None,
        };
        for &i in active {
            let effect = policy.schedules[i].effect;
            if let Some((a, b)) = effect.range {
                e.range = Some(e.range.map_or((a, b), |(ra, rb)| (ra.max(a), rb.min(b))));
            }
            if let Some(f) = effect.floor
                && e.floor.is_none_or(|(v, _)| f > v)
            {
                e.floor = Some((f, i));
            }
            if let Some(c) = effect.ceiling
                && e.ceiling.is_none_or(|(v, _)| c < v)
            {
                e.ceiling = Some((c, i));
            }
        }
        e
    }

    /// Step 5's bounds: the policy's, or the active ranges' (capacity before cost: a
    /// range whose floor passed its ceiling keeps the floor).
    fn bounds(&self, policy: &Policy) -> (u32, u32) {
        match self.range {
            Some((a, b)) => (a, b.max(a)),
            None => (policy.min, policy.max),
        }
    }

    /// What the schedules alone demand of `value`: the ceiling, then the floor.
    fn force(&self, value: u32) -> u32 {
        let mut forced = value;
        if let Some((c, _)) = self.ceiling {
            forced = forced.min(c);
        }
        if let Some((f, _)) = self.floor {
            forced = forced.max(f);
        }
        forced
    }
}

/// Step 1 for one rule: a proposal, or why it abstains. `window` is the rule's `for`
/// window. A `track` rule's proposal is the raw one; step 2 applies the tolerance.
fn proposal(
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
        if !ratio.is_finite() {
            return Outcome::Abstained(Abstain::Missing);
        }
        Outcome::Proposed {
            replicas: eval::replicas(eval::ceil(c * ratio)),
            how: How::Track {
                value: v,
                ratio,
                within_tolerance: false,
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
                // The `to` value is read only when the rule would propose (§6 step 4).
                WhenAction::To(e) => match eval::number(e, scope) {
                    Some(v) => (eval::replicas(eval::ceil(v)), How::Value { value: v }),
                    None => return missing,
                },
            };
            Outcome::Proposed { replicas, how }
        }
    }
}

/// Step 2: a `track` rule whose ratio is within `1 ± tolerance` proposes `current`.
fn tolerance(policy: &Policy, outcome: Outcome, current: u32) -> Outcome {
    match outcome {
        Outcome::Proposed {
            how: How::Track { value, ratio, .. },
            replicas,
        } => {
            let within = (ratio - 1.0).abs() <= policy.tolerance + eval::NOISE;
            Outcome::Proposed {
                replicas: if within { current } else { replicas },
                how: How::Track {
                    value,
                    ratio,
                    within_tolerance: within,
                },
            }
        }
        other => other,
    }
}

/// Step 3: the highest proposal; without one, `current`, or in a policy with no rules
/// at all the lowest count step 5 allows (`lo`).
fn recommendation(
    policy: &Policy,
    rules: &[Outcome],
    current: u32,
    lo: u32,
    steps: &mut Steps,
) -> u32 {
    let best = rules
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Proposed { replicas, .. } => Some((*replicas, i)),
            Outcome::Abstained(_) => None,
        })
        .max_by_key(|(r, i)| (*r, std::cmp::Reverse(*i)));
    let (value, note) = match best {
        Some((r, rule)) => (r, Note::Highest { rule }),
        None if policy.rules.is_empty() => (lo, Note::NoRules),
        None => (current, Note::NoProposal),
    };
    steps.push(Step {
        kind: StepKind::Recommendation,
        before: current,
        after: value,
        note,
    });
    value
}

/// Step 4: a tick has missing data when a rule abstains because its input is missing.
fn missing_data(
    policy: &Policy,
    state: &mut State,
    rules: &[Outcome],
    current: u32,
    mut value: u32,
    steps: &mut Steps,
) -> u32 {
    let before = value;
    let mut note = Note::Nothing;
    let missing = rules
        .iter()
        .any(|o| matches!(o, Outcome::Abstained(Abstain::Missing)));
    if !missing {
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
    value
}

/// Step 5: clamp to the bounds (an active schedule's `replicas A..B` replaces them).
/// The result is the tick's recommendation.
fn bounds(value: u32, lo: u32, hi: u32, from_schedule: bool, steps: &mut Steps) -> u32 {
    let after = value.clamp(lo, hi);
    steps.push(Step {
        kind: StepKind::Bounds,
        before: value,
        after,
        note: Note::Bounds {
            min: lo,
            max: hi,
            from_schedule,
        },
    });
    after
}

/// Step 6: HPA's stabilisation over the recommendations of the last U and D. A policy
/// without history first records `current`; `outside` (step 5: `current` is outside
/// the bounds) skips the formula and gives the nearest bound.
fn stabilisation(
    policy: &Policy,
    state: &mut State,
    now: DateTime<Utc>,
    current: u32,
    recommendation: u32,
    outside: Option<u32>,
    steps: &mut Steps,
) -> u32 {
    let first_tick = state.recommendations.is_empty();
    if first_tick {
        state.recommendations.push_back(Recommendation {
            at: now,
            replicas: current,
        });
    }
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
    if let Some(bound) = outside {
        steps.push(Step {
            kind: StepKind::Stabilize,
            before: recommendation,
            after: bound,
            note: Note::OutsideBounds { current },
        });
        return bound;
    }
    // "The last 0s" holds this tick's recommendation alone (not the first-tick record).
    // Folded by hand: this runs every tick of every policy, and must not allocate.
    let extreme = |d: Duration, pick: fn(u32, u32) -> u32| -> u32 {
        if d.is_zero() {
            return recommendation;
        }
        let window = Window::last(now, d);
        state
            .recommendations
            .iter()
            .filter(|r| window.contains(r.at))
            .map(|r| r.replicas)
            .fold(recommendation, pick)
    };
    let lowest_up = extreme(policy.stabilize_up, u32::min);
    let highest_down = extreme(policy.stabilize_down, u32::max);
    let after = current.max(lowest_up).min(highest_down);
    steps.push(Step {
        kind: StepKind::Stabilize,
        before: recommendation,
        after,
        note: Note::Stabilize {
            lowest_up,
            highest_down,
            first_tick,
        },
    });
    after
}

/// Step 7: the lowest active ceiling, then the highest active floor (the floor wins).
fn schedule_limits(effects: &Effects, mut value: u32, steps: &mut Steps) -> u32 {
    let before = value;
    let mut note = Note::Nothing;
    if let Some((c, schedule)) = effects.ceiling
        && value > c
    {
        value = c;
        note = Note::Ceiling {
            schedule,
            replicas: c,
        };
    }
    if let Some((f, schedule)) = effects.floor
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
    value
}

/// Step 8: rate limits; a move back inside the bounds (step 5) is not held back.
fn rate_limits(limits: &RateLimits, value: u32, outside: bool, steps: &mut Steps) -> u32 {
    let (after, note) = if outside {
        (value, Note::Nothing)
    } else {
        limits.apply(value)
    };
    steps.push(Step {
        kind: StepKind::RateLimit,
        before: value,
        after,
        note,
    });
    after
}

/// Step 9: cooldowns. A move a schedule forces is held back by rate limits only, and a
/// move back inside the bounds not at all.
#[allow(clippy::too_many_arguments)]
fn cooldown(
    policy: &Policy,
    state: &State,
    now: DateTime<Utc>,
    current: u32,
    mut value: u32,
    (effects, limits): (&Effects, &RateLimits),
    outside: bool,
    steps: &mut Steps,
) -> u32 {
    let before = value;
    let mut note = Note::Nothing;
    let direction = match value.cmp(&current) {
        std::cmp::Ordering::Greater => Some(Direction::Up),
        std::cmp::Ordering::Less => Some(Direction::Down),
        std::cmp::Ordering::Equal => None,
    };
    if let (false, Some(direction), Some(last)) = (outside, direction, state.last_event) {
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
            value = limits.apply(effects.force(current)).0;
        }
    }
    steps.push(Step {
        kind: StepKind::Cooldown,
        before,
        after: value,
        note,
    });
    value
}

/// Step 10: a result other than `current` is a decision, and a scale event of the
/// policy that restarts its open `for` windows.
fn decision(policy: &Policy, state: &mut State, e: &Explanation) -> Option<Decision> {
    let (now, current, value) = (e.at, e.current, e.result);
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
            reason: explain::reason(policy, e),
            dry_run: policy.dry_run,
        }
    });
    let keep = Window::last(now, longest_limit_window(policy));
    while state.events.front().is_some_and(|e| !keep.contains(e.at)) {
        state.events.pop_front();
    }
    decision
}

/// The limits a direction has when the policy writes none of its own: `4 per 15s` and
/// `100% per 15s`, combined by the direction's `select` (down has none: unlimited).
const DEFAULT_UP: [Rate; 2] = [
    Rate {
        amount: RateAmount::Count(4),
        per: Duration::from_secs(15),
    },
    Rate {
        amount: RateAmount::Percent(1.0),
        per: Duration::from_secs(15),
    },
];

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
            self.up
        } else if value < self.current && value < self.down.0 {
            self.down
        } else {
            (value, Note::Nothing)
        }
    }
}

/// The limit of one direction and the note that names it. Up: the highest count
/// allowed, never below `current`; down: the lowest, never above it.
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
    let default = limits.rates.is_empty();
    let rates: &[Rate] = match (default, up) {
        (false, _) => &limits.rates,
        (true, true) => &DEFAULT_UP,
        (true, false) => return (0, Note::Nothing),
    };
    let candidates = rates.iter().enumerate().map(|(index, rate)| {
        let s = start(rate.per);
        let allowed = match (up, rate.amount) {
            (true, RateAmount::Count(n)) => s.saturating_add(n),
            // Counted from at least one replica, so that a policy can leave zero.
            (true, RateAmount::Percent(p)) => {
                eval::replicas(eval::ceil(f64::from(s.max(1)) * (1.0 + p)))
            }
            (false, RateAmount::Count(n)) => s.saturating_sub(n),
            (false, RateAmount::Percent(p)) => {
                eval::replicas(eval::trunc(f64::from(s) * (1.0 - p)))
            }
        };
        // A limit never moves the count the other way.
        let allowed = if up {
            allowed.max(current)
        } else {
            allowed.min(current)
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
                by: if default {
                    LimitSource::Default { index, start: s }
                } else {
                    LimitSource::Rate { index, start: s }
                },
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
        .chain(&DEFAULT_UP)
        .map(|r| r.per);
    rates.max().unwrap_or(DEFAULT_UP[0].per)
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
    fn a_window_cuts_off_where_calendar_arithmetic_does() {
        let instants = [
            at(0, 0),
            at(0, 4),
            at(9, 30) + TimeDelta::milliseconds(250),
            at(23, 59) + TimeDelta::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30)
                .single()
                .unwrap_or_default(),
        ];
        let durations = [0, 1, 15, 59, 60, 240, 300, 3600, 86_399, 86_400, 90_000];
        for now in instants {
            for secs in durations {
                for nanos in [0, 250_000_000, 999_999_999] {
                    let d = Duration::new(secs, nanos);
                    assert_eq!(
                        Window::last(now, d).cutoff,
                        now.checked_sub_signed(delta(d)),
                        "{now} - {d:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_tick_explains_all_seven_steps() {
        let p = policy(
            "policy \"p\" {\n  target audit \"t\"\n  replicas 1..9\n  metric q = load \"q\"\n  track q per replica 5\n}\n",
        );
        let (mut state, mut schedules) = (State::new(), Schedules::new());
        for (i, q) in [Some(40.0), None, Some(3.0)].into_iter().enumerate() {
            let t = tick(
                &p,
                &mut schedules,
                &mut state,
                &Input {
                    now: at(10, i as u32),
                    current: 4,
                    samples: &[q],
                },
            );
            let kinds: Vec<StepKind> = t.explanation.steps.iter().map(|s| s.kind).collect();
            assert_eq!(kinds.len(), Steps::CAPACITY);
            assert_eq!(
                kinds,
                [
                    StepKind::Recommendation,
                    StepKind::Missing,
                    StepKind::Bounds,
                    StepKind::Stabilize,
                    StepKind::Schedules,
                    StepKind::RateLimit,
                    StepKind::Cooldown
                ]
            );
        }
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

    #[test]
    fn a_reason_starts_with_what_made_the_decision() {
        // Issue 9: a schedule-forced move was reported under an unrelated rule.
        let p = policy(
            "policy \"p\" {\n target t \"x\"\n replicas 1..10\n metric cpu = prometheus \"cpu\"\n\
             when cpu < 40% scale down by 1\n stabilize down 0s\n\
             schedule \"peak\" {\n on daily from 08:00 to 18:00 in \"UTC\"\n replicas at least 2\n }\n}",
        );
        let tick = tick(
            &p,
            &mut Schedules::new(),
            &mut State::new(),
            &Input {
                now: at(9, 0),
                current: 1,
                samples: &[Some(0.1)],
            },
        );
        let reason = tick.decision.map(|d| d.reason).unwrap_or_default();
        assert!(
            reason.starts_with("schedules: 1 -> 2 (schedule `peak` floor 2)"),
            "{reason}"
        );
        // The rule's proposal is still there, after the cause.
        assert!(
            reason.contains("`when cpu < 40% scale down by 1` proposes 0"),
            "{reason}"
        );
    }
}
