//! The checked policy: what the engine runs. Plain data, units normalised (durations
//! as `Duration`, percentages as ratios, bytes as numbers), names resolved to indices.
//! No spans and no syntax types: nothing here knows how the policy was written.

use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use chrono_tz::Tz;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub target: Target,
    pub min: u32,
    pub max: u32,
    pub every: Duration,
    pub metrics: Vec<Metric>,
    /// In definition order: a `let` only refers to metrics and earlier `let`s.
    pub lets: Vec<Let>,
    /// Index into `metrics`.
    pub current_from: Option<usize>,
    pub timezone: Tz,
    pub dry_run: bool,
    pub rules: Vec<Rule>,
    /// A ratio: 0.3 for `buffer 30%`.
    pub buffer: f64,
    /// A ratio: 0.1 for the default `tolerance 10%`.
    pub tolerance: f64,
    pub on_missing: OnMissing,
    pub stabilize_up: Duration,
    pub stabilize_down: Duration,
    pub limits_up: Limits,
    pub limits_down: Limits,
    pub cooldown_up: Duration,
    pub cooldown_down: Duration,
    pub schedules: Vec<Schedule>,
}

impl Policy {
    /// Gives back the spare capacity of every vector and string: a checked policy is
    /// kept for the life of the service (100,000 of them in one instance), and the
    /// checker's vectors grow by doubling (a one-rule policy held room for four).
    pub fn shrink_to_fit(&mut self) {
        self.name.shrink_to_fit();
        self.target.actuator.shrink_to_fit();
        self.target.id.shrink_to_fit();
        self.metrics.shrink_to_fit();
        for m in &mut self.metrics {
            m.name.shrink_to_fit();
            m.source.shrink_to_fit();
            m.query.shrink_to_fit();
        }
        self.lets.shrink_to_fit();
        for l in &mut self.lets {
            l.name.shrink_to_fit();
            l.expr.shrink_to_fit();
        }
        self.rules.shrink_to_fit();
        for r in &mut self.rules {
            r.text.shrink_to_fit();
            match &mut r.kind {
                RuleKind::TrackAt { value, .. }
                | RuleKind::TrackPerReplica { value, .. }
                | RuleKind::Desired { value } => value.shrink_to_fit(),
                RuleKind::When { cond, action, .. } => {
                    cond.shrink_to_fit();
                    if let WhenAction::To(e) = action {
                        e.shrink_to_fit();
                    }
                }
            }
        }
        self.limits_up.rates.shrink_to_fit();
        self.limits_down.rates.shrink_to_fit();
        self.schedules.shrink_to_fit();
        for s in &mut self.schedules {
            s.name.shrink_to_fit();
            s.windows.shrink_to_fit();
            for w in &mut s.windows {
                w.except.shrink_to_fit();
            }
        }
    }
}

impl Expr {
    fn shrink_to_fit(&mut self) {
        match self {
            Expr::Number(_) | Expr::Metric(_) | Expr::Let(_) | Expr::Current => {}
            Expr::Neg(e) | Expr::Not(e) => e.shrink_to_fit(),
            Expr::Binary(_, a, b) => {
                a.shrink_to_fit();
                b.shrink_to_fit();
            }
            Expr::Call(_, args) => {
                args.shrink_to_fit();
                args.iter_mut().for_each(Expr::shrink_to_fit);
            }
        }
    }
}

/// A duration as policies write it: `90s`, `5m`, `2h`, `250ms`. Used in messages and
/// explanations alike.
pub fn show_duration(d: Duration) -> String {
    DurationText(d).to_string()
}

/// A duration as the language writes it (`90s`, `5m`, `1h`, `250ms`), for `write!`
/// without an intermediate `String`.
#[derive(Debug, Clone, Copy)]
pub struct DurationText(pub Duration);

impl DurationText {
    /// The count and its unit: `(250, "ms")`, `(90, "s")`, `(5, "m")`, `(1, "h")`.
    pub fn parts(self) -> (u64, &'static str) {
        let ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if !ms.is_multiple_of(1000) {
            return (ms, "ms");
        }
        match ms / 1000 {
            0 => (0, "s"),
            s if s % 3600 == 0 => (s / 3600, "h"),
            s if s % 60 == 0 => (s / 60, "m"),
            s => (s, "s"),
        }
    }
}

impl std::fmt::Display for DurationText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, unit) = self.parts();
        write!(f, "{n}{unit}")
    }
}

pub const DEFAULT_EVERY: Duration = Duration::from_secs(15);
pub const DEFAULT_TOLERANCE: f64 = 0.1;
pub const DEFAULT_STABILIZE_DOWN: Duration = Duration::from_secs(300);
pub const MAX_LIMIT_WINDOW: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub actuator: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub source: String,
    pub query: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Let {
    pub name: String,
    pub expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule in canonical form, as `fmt` prints it: names the rule in explanations.
    pub text: String,
    pub kind: RuleKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// `track EXPR at T`: utilisation target.
    TrackAt { value: Expr, target: f64 },
    /// `track EXPR per replica T`: average-value target.
    TrackPerReplica { value: Expr, target: f64 },
    /// `desired = EXPR`.
    Desired { value: Expr },
    /// `when COND [for D] scale ...`.
    When {
        cond: Expr,
        sustain: Option<Duration>,
        action: WhenAction,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum WhenAction {
    UpBy(u32),
    DownBy(u32),
    /// A ratio: 0.5 for `up by 50%`.
    UpByPercent(f64),
    DownByPercent(f64),
    To(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Metric(usize),
    Let(usize),
    Current,
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
    And,
    Or,
    /// `a ?? b`: `a` where it is present, else `b`.
    Fallback,
}

impl BinOp {
    pub fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Ceil,
    Floor,
    Round,
    Abs,
    Min,
    Max,
    Clamp,
}

impl Func {
    pub const ALL: [Func; 7] = [
        Func::Ceil,
        Func::Floor,
        Func::Round,
        Func::Abs,
        Func::Min,
        Func::Max,
        Func::Clamp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Ceil => "ceil",
            Func::Floor => "floor",
            Func::Round => "round",
            Func::Abs => "abs",
            Func::Min => "min",
            Func::Max => "max",
            Func::Clamp => "clamp",
        }
    }

    /// The accepted argument counts, as (least, most).
    pub fn arity(self) -> (usize, usize) {
        match self {
            Func::Ceil | Func::Floor | Func::Round | Func::Abs => (1, 1),
            Func::Min | Func::Max => (2, usize::MAX),
            Func::Clamp => (3, 3),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    Hold,
    /// From the `after`-th consecutive tick with a missing metric on, recommend `replicas`.
    ScaleTo {
        replicas: u32,
        after: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Select {
    /// The most permissive limit wins (the default, as in HPA).
    #[default]
    Max,
    Min,
}

/// The rate limits of one direction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Limits {
    pub rates: Vec<Rate>,
    pub select: Select,
    pub disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub amount: RateAmount,
    pub per: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateAmount {
    Count(u32),
    /// A ratio: 1.0 for `100%`.
    Percent(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub windows: Vec<Window>,
    pub effect: Effect,
}

/// What an active schedule does. `range` replaces the policy's bounds (step 5) and is
/// also a floor and a ceiling (step 7); `floor` and `ceiling` already include it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effect {
    pub floor: Option<u32>,
    pub ceiling: Option<u32>,
    pub range: Option<(u32, u32)>,
    /// Set by `replicas exactly N`.
    pub exactly: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub kind: WindowKind,
    pub zone: Tz,
    /// Local days on which a window that would start is skipped.
    pub except: Vec<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    /// Starts on the marked days (Monday = 0) at `from`, ends at `to` on the same day,
    /// or on the next day when `to` is earlier than `from`.
    Weekly {
        days: [bool; 7],
        from: NaiveTime,
        to: NaiveTime,
    },
    OneOff {
        from: NaiveDateTime,
        to: NaiveDateTime,
    },
    /// Boxed: a parsed cron pattern is large beside the other window kinds.
    Cron {
        pattern: Box<CronPattern>,
        duration: Duration,
    },
}

/// A parsed crontab(5) expression; compared by its text.
#[derive(Debug, Clone)]
pub struct CronPattern {
    pub text: String,
    pub cron: croner::Cron,
}

impl PartialEq for CronPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl CronPattern {
    /// Five fields, names allowed, 0 or 7 for Sunday; day of month and day of week
    /// match either way when both are restricted (Vixie cron).
    pub fn parse(text: &str) -> Result<CronPattern, String> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build();
        // croner is third-party code on user input: a panic in it must not take the
        // checker down with it.
        let parsed = std::panic::catch_unwind(|| parser.parse(text))
            .map_err(|_| "the cron parser failed on this expression".to_string())?;
        let cron = parsed.map_err(|e| e.to_string())?;
        Ok(CronPattern {
            text: text.to_string(),
            cron,
        })
    }
}
