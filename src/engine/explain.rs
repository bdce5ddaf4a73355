//! What a tick found and why, as data: each rule's proposal or why it abstained, and
//! each step of §6 with the count before and after and what bound it. Words are made
//! from it only when someone reads it (`describe`, `reason`).

use std::fmt::{self, Write as _};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{Direction, DurationText, Policy, Rate, RateAmount};

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

/// The steps of one tick in §6's order, kept inline: every tick has the same seven, and
/// a tick of every policy must not allocate for them. Reads as a slice.
#[derive(Clone, Copy, PartialEq)]
pub struct Steps {
    items: [Step; Steps::CAPACITY],
    len: usize,
}

impl Steps {
    /// Steps 3 to 9.
    pub const CAPACITY: usize = 7;

    pub fn new() -> Self {
        Steps {
            items: [Step {
                kind: StepKind::Recommendation,
                before: 0,
                after: 0,
                note: Note::Nothing,
            }; Steps::CAPACITY],
            len: 0,
        }
    }

    /// Adds a step; the engine adds exactly `CAPACITY` (a test in `engine` holds it).
    pub fn push(&mut self, step: Step) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = step;
            self.len += 1;
        }
    }
}

impl Default for Steps {
    fn default() -> Self {
        Steps::new()
    }
}

impl std::ops::Deref for Steps {
    type Target = [Step];

    fn deref(&self) -> &[Step] {
        &self.items[..self.len]
    }
}

impl<'a> IntoIterator for &'a Steps {
    type Item = &'a Step;
    type IntoIter = std::slice::Iter<'a, Step>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Steps {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
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
    pub steps: Steps,
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

/// Writes its pieces in order, each with `Piece::put`, straight into the buffer: a
/// decision's reason is made at every decision of every policy. Made with `format!`
/// for each piece and `{:.3}` for each number, a reason cost about 13,000 cycles; this
/// way about 1,000 (docs/serve.md, "Performance").
macro_rules! put {
    ($f:expr; $($piece:expr),+ $(,)?) => {{
        $( Piece::put(&$piece, $f)?; )+
    }};
}

/// A part of an explanation's text.
trait Piece {
    fn put<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result;
}

impl Piece for &str {
    fn put<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        f.write_str(self)
    }
}

impl Piece for u32 {
    fn put<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        digits(f, u64::from(*self))
    }
}

impl Piece for DurationText {
    fn put<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        let (n, unit) = self.parts();
        digits(f, n)?;
        f.write_str(unit)
    }
}

/// A whole number in decimal.
fn digits<W: fmt::Write + ?Sized>(f: &mut W, mut n: u64) -> fmt::Result {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    f.write_str(std::str::from_utf8(&buf[at..]).unwrap_or("?"))
}

/// A number as explanations show it: at most three decimals, trailing zeros dropped;
/// scientific outside [0.001, 1e6).
struct Num(f64);

impl Piece for Num {
    fn put<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        let v = self.0;
        if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-3) || !v.is_finite() {
            return write!(f, "{v:.3e}");
        }
        // Thousandths as an integer. Where `v × 1000` lies too close to a half for its
        // one rounding to be sure which way `{:.3}` rounds, `{:.3}` decides.
        let scaled = v * 1000.0;
        let fraction = (scaled - scaled.trunc()).abs();
        if (fraction - 0.5).abs() < 1e-6 || (v == 0.0 && v.is_sign_negative()) {
            let s = format!("{v:.3}");
            return f.write_str(s.trim_end_matches('0').trim_end_matches('.'));
        }
        // |v| < 1e6, so |thousandths| < 1e9: exact in an i64.
        #[allow(clippy::cast_possible_truncation)]
        let thousandths = scaled.round() as i64;
        if thousandths < 0 {
            f.write_str("-")?;
        }
        let (whole, mut part) = (
            thousandths.unsigned_abs() / 1000,
            thousandths.unsigned_abs() % 1000,
        );
        digits(f, whole)?;
        if part == 0 {
            return Ok(());
        }
        let mut width = 3;
        while part % 10 == 0 {
            part /= 10;
            width -= 1;
        }
        f.write_str(".")?;
        for _ in 0..width - 1 - u32::from(part >= 10) - u32::from(part >= 100) {
            f.write_str("0")?;
        }
        digits(f, part)
    }
}

/// `limit up 50% per 1m`.
struct RateText<'a>(Direction, &'a Rate);

impl Piece for RateText<'_> {
    fn put<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        let RateText(direction, rate) = self;
        put!(f; "limit ", direction.as_str(), " ");
        match rate.amount {
            RateAmount::Count(n) => put!(f; n),
            RateAmount::Percent(p) => put!(f; Num(p * 100.0), "%"),
        }
        put!(f; " per ", DurationText(rate.per));
        Ok(())
    }
}

fn schedule_name(policy: &Policy, i: usize) -> &str {
    policy.schedules.get(i).map_or("?", |s| s.name.as_str())
}

/// One rule's outcome in words.
pub fn outcome_text(outcome: &Outcome, current: u32) -> String {
    OutcomeText(outcome, current).to_string()
}

struct OutcomeText<'a>(&'a Outcome, u32);

impl fmt::Display for OutcomeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.put(f)
    }
}

impl Piece for OutcomeText<'_> {
    fn put<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        let OutcomeText(outcome, current) = *self;
        match outcome {
            Outcome::Proposed { replicas, how } => {
                put!(f; "proposes ", *replicas);
                match how {
                    How::Track {
                        value,
                        ratio,
                        within_tolerance,
                    } => {
                        put!(f; " (value ", Num(*value), ", ratio ", Num(*ratio));
                        if *within_tolerance {
                            put!(f; " within tolerance: holds ", current);
                        }
                        put!(f; ")");
                    }
                    How::TrackFromZero { value } => {
                        put!(f; " (value ", Num(*value), ", from zero replicas)")
                    }
                    How::Value { value } => put!(f; " (value ", Num(*value), ")"),
                    How::Step => {}
                }
                Ok(())
            }
            Outcome::Abstained(Abstain::Missing) => f.write_str("abstains: an input is missing"),
            Outcome::Abstained(Abstain::ConditionFalse) => {
                f.write_str("abstains: condition is false")
            }
            Outcome::Abstained(Abstain::Sustaining { since, needed }) => write!(
                f,
                "abstains: condition true since {}, needs {}",
                since.format("%Y-%m-%dT%H:%M:%SZ"),
                DurationText(*needed)
            ),
        }
    }
}

/// One step in words.
pub fn step_text(policy: &Policy, step: &Step) -> String {
    StepText(policy, step).to_string()
}

struct StepText<'a>(&'a Policy, &'a Step);

impl fmt::Display for StepText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.put(f)
    }
}

impl Piece for StepText<'_> {
    fn put<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        let StepText(policy, step) = *self;
        if step.before == step.after {
            put!(f; step.after);
        } else {
            put!(f; step.before, " -> ", step.after);
        }
        if step.note == Note::Nothing {
            return Ok(());
        }
        f.write_str(" (")?;
        match step.note {
            Note::Nothing => {}
            Note::Highest { rule } => put!(f;
                "highest proposal, from `",
                policy.rules.get(rule).map_or("?", |r| r.text.as_str()),
                "`"
            ),
            Note::NoProposal => f.write_str("no rule proposed: current count")?,
            Note::NoRules => f.write_str("no rules: the lowest count the bounds allow")?,
            Note::Hold => {
                f.write_str("a rule's input is missing: on missing hold, no scale-down")?
            }
            Note::FallbackPending { tick, after } => put!(f;
                "a rule's input is missing (tick ", tick, " of ", after, "): holding"
            ),
            Note::Fallback { tick } => put!(f;
                "a rule's input is missing for ", tick, " ticks: fallback count"
            ),
            Note::Bounds {
                min,
                max,
                from_schedule,
            } => {
                put!(f; "replicas ", min, "..", max);
                if from_schedule {
                    f.write_str(" from an active schedule")?;
                }
            }
            Note::Stabilize {
                lowest_up,
                highest_down,
                first_tick,
            } => {
                put!(f;
                    "lowest recommendation of the last ", DurationText(policy.stabilize_up),
                    ": ", lowest_up,
                    "; highest of the last ", DurationText(policy.stabilize_down),
                    ": ", highest_down,
                );
                if first_tick {
                    f.write_str("; first tick: current recorded as a recommendation")?;
                }
            }
            Note::OutsideBounds { current } => put!(f;
                "current ", current, " is outside the bounds: the nearest bound at once"
            ),
            Note::Floor { schedule, replicas } => put!(f;
                "schedule `", schedule_name(policy, schedule), "` floor ", replicas
            ),
            Note::Ceiling { schedule, replicas } => put!(f;
                "schedule `", schedule_name(policy, schedule), "` ceiling ", replicas
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
                        f.write_str("`")?;
                        match limits.rates.get(index) {
                            Some(r) => RateText(direction, r).put(f)?,
                            None => f.write_str("?")?,
                        }
                        put!(f; "` allows ", limit, " (from ", start, ")");
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
                        put!(f;
                            "default `limit up ", text, "` (", select,
                            " of 4 per 15s, 100% per 15s) allows ", limit,
                            " (from ", start, ")"
                        );
                    }
                    LimitSource::Disabled => {
                        put!(f; "`limit ", direction.as_str(), " disabled`")
                    }
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
                put!(f;
                    "`cooldown ", direction.as_str(), " ", DurationText(cooldown),
                    "`: ", DurationText(remaining), " left"
                );
            }
        }
        f.write_str(")")
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
            OutcomeText(outcome, e.current)
        );
    }
    for step in &e.steps {
        let _ = writeln!(
            out,
            "  {:<15} {}",
            format!("{}:", step.kind.title()),
            StepText(policy, step)
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
    let way = e.result.cmp(&e.current);
    let maker = e
        .steps
        .iter()
        .rposition(|s| s.after.cmp(&s.before) == way && way != std::cmp::Ordering::Equal)
        .filter(|i| *i > 0);
    let telling = |s: &Step| {
        s.before != s.after
            || (matches!(s.kind, StepKind::Missing | StepKind::Cooldown) && s.note != Note::Nothing)
            || matches!(s.note, Note::OutsideBounds { .. })
    };
    // One buffer, written in order: the reason is made at every decision.
    let mut out = String::with_capacity(256);
    let step = |out: &mut String, s: &Step| {
        put_all(out, |out| {
            put!(out; s.kind.title(), ": ", StepText(policy, s));
            Ok(())
        });
    };
    if let Some(i) = maker {
        step(&mut out, &e.steps[i]);
        out.push_str("; ");
    }
    match e.steps.first().map(|s| s.note) {
        Some(Note::Highest { rule }) => {
            let text = policy.rules.get(rule).map_or("?", |r| r.text.as_str());
            put_all(&mut out, |out| {
                put!(out; "`", text, "`");
                if let Some(outcome) = e.rules.get(rule) {
                    put!(out; " ", OutcomeText(outcome, e.current));
                }
                Ok(())
            });
        }
        _ if policy.rules.is_empty() => match e.steps.first() {
            Some(first) => {
                let _ = write!(out, "no rule; recommendation: {}", StepText(policy, first));
            }
            None => out.push_str("no rule"),
        },
        _ => {
            out.push_str("no proposal: ");
            for (i, (rule, outcome)) in policy.rules.iter().zip(&e.rules).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                put_all(&mut out, |out| {
                    put!(out; "`", rule.text.as_str(), "` ", OutcomeText(outcome, e.current));
                    Ok(())
                });
            }
        }
    }
    for (i, s) in e.steps.iter().enumerate().skip(1) {
        if Some(i) != maker && telling(s) {
            out.push_str("; ");
            step(&mut out, s);
        }
    }
    out
}

/// Runs `write` on `out`; writing to a `String` cannot fail.
fn put_all(out: &mut String, write: impl FnOnce(&mut String) -> fmt::Result) {
    let _ = write(out);
}

#[cfg(test)]
mod tests {
    use super::{Num, Piece};

    /// What `Num` must print: `{:.3}` with trailing zeros dropped (`{:.3e}` outside
    /// [0.001, 1e6)), the formatting it replaces.
    fn by_format(v: f64) -> String {
        if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-3) || !v.is_finite() {
            format!("{v:.3e}")
        } else {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }

    #[test]
    fn numbers_read_as_three_decimals_would() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.7,
            0.1 + 0.2,
            1.0005,
            2.0005,
            0.0015,
            0.0025,
            123.4565,
            999_999.999_6,
            999_999.999_4,
            1e6,
            0.001,
            0.000_999_9,
            -0.0004,
            41.5,
            1.25e-3,
            f64::NAN,
            f64::INFINITY,
            12.345_000_1,
            5.0 / 3.0,
        ];
        // A seeded walk over magnitudes and halves (xorshift), the cases a rounding
        // shortcut gets wrong.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            let magnitude = 10f64.powi((x % 10) as i32 - 3);
            let v = unit * magnitude * if x & 1 == 0 { 1.0 } else { -1.0 };
            values.push(v);
            // Exactly a half-thousandth, and its neighbours.
            let half = ((unit * 1e6).round() + 0.5) / 1000.0;
            values.extend([half, half.next_up(), half.next_down()]);
        }
        for v in values {
            let mut written = String::new();
            Num(v).put(&mut written).unwrap_or_default();
            assert_eq!(written, by_format(v), "{v:?}");
        }
    }
}
