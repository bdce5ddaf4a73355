//! One policy's syntax tree → the checked `model::Policy`, with every error and warning
//! of the language reference §7 that concerns a single policy.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono_tz::Tz;

use crate::diagnostic::{Code, Diagnostic, Severity, Span};
use crate::model::{
    self, Limits, OnMissing, Rate, RateAmount, RuleKind, Select, WhenAction, show_duration,
};
use crate::syntax::ast::{self, Action, BinOp, Direction, Limit, Missing, Node, Stmt, TrackTarget};
use crate::syntax::format;

use super::Options;
use super::expr::{Scope, Ty, simple_comparison};
use super::schedule;
use super::values::{self, CountOrPercent};

/// Words of the language that may not name a metric or a `let`.
pub const RESERVED: &[&str] = &crate::syntax::ast::KEYWORDS;

struct Lowering<'a> {
    file: usize,
    options: &'a Options,
    diags: Vec<Diagnostic>,
}

/// A `when` condition of the simple form `name OP constant`, for the flapping lint.
struct Threshold {
    name: String,
    op: BinOp,
    value: f64,
    span: Span,
}

impl Lowering<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn take<T>(&mut self, result: Result<T, Diagnostic>) -> Option<T> {
        result.map_err(|d| self.push(d)).ok()
    }
}

pub fn lower(
    policy: &ast::Policy,
    file: usize,
    options: &Options,
) -> (Option<model::Policy>, Vec<Diagnostic>) {
    let mut cx = Lowering {
        file,
        options,
        diags: Vec::new(),
    };
    let model = lower_policy(&mut cx, policy);
    let failed = cx.diags.iter().any(|d| d.severity == Severity::Error);
    (if failed { None } else { model }, cx.diags)
}

fn valid_policy_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-".contains(c))
}

fn lower_policy(cx: &mut Lowering<'_>, policy: &ast::Policy) -> Option<model::Policy> {
    let file = cx.file;
    let name = policy.name.value.clone();
    if !valid_policy_name(&name) {
        let suggestion: String = name
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._/-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        cx.push(
            Diagnostic::new(
                Code::InvalidPolicyName,
                file,
                policy.name.span,
                format!("invalid policy name `{name}`"),
            )
            .label("lower-case letters, digits and `._/-` only, starting with a letter or digit")
            .help(format!(
                "try `\"{}\"`",
                suggestion.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
            )),
        );
    }

    // First pass: the names every statement may see, and the singletons.
    let mut metrics: HashMap<String, usize> = HashMap::new();
    let mut metric_defs: Vec<(model::Metric, Span)> = Vec::new();
    let mut all_lets: HashMap<String, Span> = HashMap::new();
    let mut defined: HashMap<String, Span> = HashMap::new();
    let mut seen: HashMap<String, Span> = HashMap::new();
    let mut timezone = Tz::UTC;
    for stmt in &policy.stmts {
        if let Some(key) = singleton_key(&stmt.node) {
            if let Some(first) = seen.get(&key) {
                cx.push(
                    Diagnostic::new(
                        Code::DuplicateStatement,
                        file,
                        stmt.span,
                        format!("`{key}` is given twice"),
                    )
                    .label("again here")
                    .secondary(*first, "first given here")
                    .help("keep one of them"),
                );
            } else {
                seen.insert(key, stmt.span);
            }
        }
        let name = match &stmt.node {
            Stmt::Metric {
                name,
                source,
                query,
            } => {
                if !defined.contains_key(&name.node) && !RESERVED.contains(&name.node.as_str()) {
                    metrics.insert(name.node.clone(), metric_defs.len());
                    let metric = model::Metric {
                        name: name.node.clone(),
                        source: source.node.clone(),
                        query: query.value.clone(),
                    };
                    metric_defs.push((metric, name.span));
                }
                name
            }
            Stmt::Let { name, .. } => {
                all_lets.entry(name.node.clone()).or_insert(name.span);
                name
            }
            Stmt::Timezone(zone) => {
                if let Some(tz) = schedule::zone(zone, file, &mut cx.diags) {
                    timezone = tz;
                }
                continue;
            }
            _ => continue,
        };
        if RESERVED.contains(&name.node.as_str()) {
            cx.push(
                Diagnostic::new(
                    Code::ReservedWord,
                    file,
                    name.span,
                    format!("`{}` is a keyword and cannot name a value", name.node),
                )
                .label("reserved")
                .help(format!("choose another name, e.g. `{}_value`", name.node)),
            );
        } else if let Some(first) = defined.get(&name.node) {
            cx.push(
                Diagnostic::new(
                    Code::DuplicateName,
                    file,
                    name.span,
                    format!("`{}` is defined twice", name.node),
                )
                .label("defined again here")
                .secondary(*first, "first defined here")
                .help("rename one of them"),
            );
        } else {
            defined.insert(name.node.clone(), name.span);
        }
    }

    let mut target = None;
    let mut bounds: Option<(u32, u32, Span)> = None;
    let mut every = (model::DEFAULT_EVERY, None::<Span>);
    let mut lets: Vec<model::Let> = Vec::new();
    let mut let_spans: Vec<Span> = Vec::new();
    let mut let_scope: HashMap<String, (usize, Ty)> = HashMap::new();
    let mut used_metrics = HashSet::new();
    let mut used_lets = HashSet::new();
    let mut current_from = None;
    let mut dry_run = false;
    let mut rules = Vec::new();
    let mut buffer = 0.0;
    let mut tolerance = model::DEFAULT_TOLERANCE;
    let mut on_missing = OnMissing::Hold;
    let mut stabilize_up = (Duration::ZERO, None::<Span>);
    let mut stabilize_down = (model::DEFAULT_STABILIZE_DOWN, None::<Span>);
    let mut cooldown_up = (Duration::ZERO, None::<Span>);
    let mut cooldown_down = (Duration::ZERO, None::<Span>);
    let mut limits_up = Limits::default();
    let mut limits_down = Limits::default();
    let mut limit_spans: Vec<(Direction, Span, bool)> = Vec::new();
    let mut sustains: Vec<(Duration, Span)> = Vec::new();
    let mut ups: Vec<Threshold> = Vec::new();
    let mut downs: Vec<Threshold> = Vec::new();
    let mut schedules: Vec<(model::Schedule, Span)> = Vec::new();
    let mut schedule_names: HashMap<String, Span> = HashMap::new();

    for stmt in &policy.stmts {
        let mut scope = Scope {
            file,
            metrics: &metrics,
            lets: &let_scope,
            all_lets: &all_lets,
            used_metrics: &mut used_metrics,
            used_lets: &mut used_lets,
        };
        match &stmt.node {
            Stmt::Target { actuator, id } => {
                target = Some(model::Target {
                    actuator: actuator.node.clone(),
                    id: id.value.clone(),
                });
            }
            Stmt::Replicas { min, max } => {
                let lo = cx.take(values::expect_count(min, "`replicas`", file));
                let hi = cx.take(values::expect_count(max, "`replicas`", file));
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo > hi {
                        cx.push(bounds_error(file, min.span.to(max.span), lo, hi));
                    }
                    bounds = Some((lo, hi, stmt.span));
                }
            }
            Stmt::Every(q) => {
                if let Some(d) = cx.take(values::expect_duration(q, "`every`", file)) {
                    if d < Duration::from_secs(1) {
                        cx.push(
                            Diagnostic::new(
                                Code::EveryTooShort,
                                file,
                                q.span,
                                format!("`every {}` is under 1s", q.text()),
                            )
                            .label("too short")
                            .help("evaluate at most once a second: `every 1s`"),
                        );
                    }
                    every = (d, Some(q.span));
                }
            }
            Stmt::Metric { .. } | Stmt::Timezone(_) => {}
            Stmt::Let { name, expr } => {
                let (lowered, ty) = scope.lower(expr, &mut cx.diags);
                if !let_scope.contains_key(&name.node)
                    && !RESERVED.contains(&name.node.as_str())
                    && !metrics.contains_key(&name.node)
                {
                    let_scope.insert(name.node.clone(), (lets.len(), ty));
                    lets.push(model::Let {
                        name: name.node.clone(),
                        expr: lowered,
                    });
                    let_spans.push(name.span);
                }
            }
            Stmt::CurrentFrom(name) => match metrics.get(&name.node) {
                Some(&index) => {
                    used_metrics.insert(index);
                    current_from = Some(index);
                }
                None => {
                    let mut d = Diagnostic::new(
                        Code::UnknownName,
                        file,
                        name.span,
                        format!("unknown metric `{}`", name.node),
                    )
                    .label("no `metric` has this name");
                    d.help = super::suggest::did_you_mean(&name.node, metrics.keys().map(String::as_str))
                        .or_else(|| Some(format!("declare it: `metric {} = prometheus \"kube_deployment_status_replicas{{...}}\"`", name.node)));
                    cx.push(d);
                }
            },
            Stmt::DryRun => dry_run = true,
            Stmt::Track {
                expr,
                target: track_target,
            } => {
                let value = scope.lower_as(expr, Ty::Number, "`track`", &mut cx.diags);
                let q = match track_target {
                    TrackTarget::At(q) | TrackTarget::PerReplica(q) => q,
                };
                if let Some(t) = track_value(cx, q) {
                    let kind = match track_target {
                        TrackTarget::At(_) => RuleKind::TrackAt { value, target: t },
                        TrackTarget::PerReplica(_) => {
                            RuleKind::TrackPerReplica { value, target: t }
                        }
                    };
                    rules.push(model::Rule {
                        text: format::stmt_line(&stmt.node),
                        kind,
                    });
                }
            }
            Stmt::Desired(expr) => {
                let value = scope.lower_as(expr, Ty::Number, "`desired`", &mut cx.diags);
                rules.push(model::Rule {
                    text: format::stmt_line(&stmt.node),
                    kind: RuleKind::Desired { value },
                });
            }
            Stmt::When {
                cond,
                sustain,
                action,
            } => {
                let lowered = scope.lower_as(cond, Ty::Condition, "`when`", &mut cx.diags);
                let sustain = match sustain {
                    Some(q) => match cx.take(values::expect_duration(q, "`for`", file)) {
                        Some(d) => {
                            sustains.push((d, q.span));
                            Some(d)
                        }
                        None => None,
                    },
                    None => None,
                };
                let action = match action {
                    Action::Up(q) | Action::Down(q) => {
                        let up = matches!(action, Action::Up(_));
                        let place = if up {
                            "`scale up by`"
                        } else {
                            "`scale down by`"
                        };
                        step_action(cx, q, up, place)
                    }
                    Action::To(expr) => Some(WhenAction::To(scope.lower_as(
                        expr,
                        Ty::Number,
                        "`scale to`",
                        &mut cx.diags,
                    ))),
                };
                if let Some((name, op, value)) = simple_comparison(cond) {
                    let threshold = Threshold {
                        name,
                        op,
                        value,
                        span: cond.span,
                    };
                    match action {
                        Some(WhenAction::UpBy(_) | WhenAction::UpByPercent(_)) => {
                            ups.push(threshold)
                        }
                        Some(WhenAction::DownBy(_) | WhenAction::DownByPercent(_)) => {
                            downs.push(threshold)
                        }
                        _ => {}
                    }
                }
                if let Some(action) = action {
                    let kind = RuleKind::When {
                        cond: lowered,
                        sustain: sustain.filter(|d| !d.is_zero()),
                        action,
                    };
                    rules.push(model::Rule {
                        text: format::stmt_line(&stmt.node),
                        kind,
                    });
                }
            }
            Stmt::Buffer(q) => {
                if let Some(p) = cx.take(values::expect_percent(q, "`buffer`", file)) {
                    if p < 0.0 {
                        cx.push(out_of_range(
                            file,
                            q.span,
                            "`buffer` cannot be negative",
                            "`buffer 30%` adds 30% on top",
                        ));
                    }
                    buffer = p;
                }
            }
            Stmt::Tolerance(q) => {
                if let Some(p) = cx.take(values::expect_percent(q, "`tolerance`", file)) {
                    if !(0.0..1.0).contains(&p) {
                        cx.push(out_of_range(
                            file,
                            q.span,
                            "`tolerance` must be at least 0% and under 100%",
                            "the default is `tolerance 10%`",
                        ));
                    }
                    tolerance = p;
                }
            }
            Stmt::OnMissing(Missing::Hold) => on_missing = OnMissing::Hold,
            Stmt::OnMissing(Missing::ScaleTo { replicas, after }) => {
                let n = cx.take(values::expect_count(
                    replicas,
                    "`on missing scale to`",
                    file,
                ));
                let k = cx.take(values::expect_count(after, "`after`", file));
                if k == Some(0) {
                    cx.push(out_of_range(
                        file,
                        after.span,
                        "`after` counts ticks and must be at least 1",
                        "`after 3` acts on the third missing tick",
                    ));
                }
                if let (Some(replicas), Some(after)) = (n, k) {
                    on_missing = OnMissing::ScaleTo { replicas, after };
                }
            }
            Stmt::Stabilize { direction, window } => {
                if let Some(d) = cx.take(values::expect_duration(window, "`stabilize`", file)) {
                    let slot = if *direction == Direction::Up {
                        &mut stabilize_up
                    } else {
                        &mut stabilize_down
                    };
                    *slot = (d, Some(window.span));
                }
            }
            Stmt::Cooldown { direction, window } => {
                if let Some(d) = cx.take(values::expect_duration(window, "`cooldown`", file)) {
                    let slot = if *direction == Direction::Up {
                        &mut cooldown_up
                    } else {
                        &mut cooldown_down
                    };
                    *slot = (d, Some(window.span));
                }
            }
            Stmt::Limit { direction, limit } => {
                let limits = if *direction == Direction::Up {
                    &mut limits_up
                } else {
                    &mut limits_down
                };
                match limit {
                    Limit::Disabled => {
                        limits.disabled = true;
                        limit_spans.push((*direction, stmt.span, true));
                    }
                    Limit::SelectMin => limits.select = Select::Min,
                    Limit::SelectMax => limits.select = Select::Max,
                    Limit::Rate { amount, per } => {
                        limit_spans.push((*direction, stmt.span, false));
                        let amount_value =
                            cx.take(values::expect_count_or_percent(amount, "`limit`", file));
                        let per_value = cx.take(values::expect_duration(per, "`per`", file));
                        if let Some(d) = per_value
                            && (d.is_zero() || d > model::MAX_LIMIT_WINDOW)
                        {
                            cx.push(out_of_range(
                                file,
                                per.span,
                                "a rate limit's window must be over 0s and at most 30m",
                                "HPA's policies allow periods up to 1800s: `per 30m`",
                            ));
                        }
                        if let (Some(a), Some(per)) = (amount_value, per_value) {
                            let amount = match a {
                                CountOrPercent::Count(n) => RateAmount::Count(n),
                                CountOrPercent::Percent(p) => RateAmount::Percent(p),
                            };
                            if matches!(a, CountOrPercent::Count(0))
                                || matches!(a, CountOrPercent::Percent(p) if p == 0.0)
                            {
                                cx.push(
                                    Diagnostic::new(
                                        Code::ZeroLimit,
                                        file,
                                        amount_span(stmt),
                                        format!(
                                            "`limit {} {}` allows no change",
                                            direction.as_str(),
                                            amount_text(amount)
                                        ),
                                    )
                                    .label("zero")
                                    .help(format!(
                                        "to forbid scaling {0}, write `limit {0} disabled`",
                                        direction.as_str()
                                    )),
                                );
                            }
                            limits.rates.push(Rate { amount, per });
                        }
                    }
                }
            }
            Stmt::Schedule(s) => {
                if let Some(first) = schedule_names.get(&s.name.value) {
                    cx.push(
                        Diagnostic::new(
                            Code::DuplicateSchedule,
                            file,
                            s.name.span,
                            format!("schedule `{}` is defined twice", s.name.value),
                        )
                        .label("again here")
                        .secondary(*first, "first defined here")
                        .help("rename one of them"),
                    );
                } else {
                    schedule_names.insert(s.name.value.clone(), s.name.span);
                }
                if let Some(lowered) =
                    schedule::lower(s, stmt.span, timezone, file, cx.options.now, &mut cx.diags)
                {
                    schedules.push((lowered, s.name.span));
                }
            }
            Stmt::Error => {}
        }
    }

    // Contradictory limits: `disabled` beside rates of the same direction.
    for direction in [Direction::Up, Direction::Down] {
        let spans: Vec<_> = limit_spans
            .iter()
            .filter(|(d, _, _)| *d == direction)
            .collect();
        if let (Some(disabled), Some(rate)) =
            (spans.iter().find(|s| s.2), spans.iter().find(|s| !s.2))
        {
            cx.push(
                Diagnostic::new(
                    Code::DuplicateStatement,
                    file,
                    disabled.1,
                    format!(
                        "`limit {} disabled` contradicts a rate limit of the same direction",
                        direction.as_str()
                    ),
                )
                .label("forbids the direction")
                .secondary(rate.1, "while this allows it")
                .help("keep either `disabled` or the rate limits"),
            );
        }
    }

    // A broken statement may be the missing `target` or `replicas`: say nothing more.
    let broken = policy.stmts.iter().any(|s| matches!(s.node, Stmt::Error));
    let Some(target) = target else {
        if broken {
            return None;
        }
        cx.push(
            Diagnostic::new(
                Code::MissingTarget,
                file,
                policy.name.span,
                format!("policy `{name}` has no `target`"),
            )
            .label("needs a target")
            .help("add `target ACTUATOR \"ID\"`, e.g. `target k8s \"default/deployment/web\"`"),
        );
        return None;
    };
    let Some((min, max, bounds_span)) = bounds else {
        if !seen.contains_key("replicas") && !broken {
            cx.push(
                Diagnostic::new(
                    Code::MissingReplicas,
                    file,
                    policy.name.span,
                    format!("policy `{name}` has no `replicas`"),
                )
                .label("needs bounds")
                .help("add `replicas MIN..MAX`, e.g. `replicas 2..10`"),
            );
        }
        return None;
    };

    let every_value = every.0;
    // Warnings about what a policy lacks or leaves unused would only echo a syntax
    // error in it: the statement that was lost may be the one they miss.
    let lints = !broken;
    for (d, span) in &sustains {
        if !d.is_zero() && *d < every_value {
            cx.push(
                Diagnostic::new(Code::WindowShorterThanEvery, file, *span, format!("a sustained window of {} is shorter than `every` ({})", show_duration(*d), show_duration(every_value)))
                    .label("shorter than one tick")
                    .help("the condition is seen once per tick: make the window at least `every`, or drop `for`"),
            );
        }
    }
    for (what, (d, span)) in [
        ("cooldown up", cooldown_up),
        ("cooldown down", cooldown_down),
        ("stabilize up", stabilize_up),
        ("stabilize down", stabilize_down),
    ] {
        if let Some(span) = span
            && !d.is_zero()
            && d < every_value
        {
            cx.push(
                Diagnostic::new(
                    Code::IneffectiveWindow,
                    file,
                    span,
                    format!(
                        "`{what} {}` is shorter than `every` ({}) and has no effect",
                        show_duration(d),
                        show_duration(every_value)
                    ),
                )
                .label("shorter than one tick")
                .help(format!(
                    "make it at least {} or remove it",
                    show_duration(every_value)
                )),
            );
        }
    }
    for up in &ups {
        for down in &downs {
            if up.name != down.name
                || !matches!(up.op, BinOp::Gt | BinOp::Ge)
                || !matches!(down.op, BinOp::Lt | BinOp::Le)
            {
                continue;
            }
            if down.value >= up.value {
                cx.push(
                    Diagnostic::new(
                        Code::Flapping,
                        file,
                        down.span,
                        format!(
                            "scale-up and scale-down thresholds on `{}` leave no gap",
                            up.name
                        ),
                    )
                    .label("scales down here")
                    .secondary(up.span, "while this scales up")
                    .help("leave a band between them, e.g. up above 80% and down below 60%"),
                );
            }
        }
    }
    for (s, span) in &schedules {
        let mut outside = Vec::new();
        if let Some(floor) = s
            .effect
            .floor
            .filter(|_| s.effect.range.is_none())
            .filter(|f| *f > max)
        {
            outside.push(format!(
                "its floor {floor} is above the policy's maximum {max}"
            ));
        }
        if let Some(ceiling) = s
            .effect
            .ceiling
            .filter(|_| s.effect.range.is_none())
            .filter(|c| *c < min)
        {
            outside.push(format!(
                "its ceiling {ceiling} is below the policy's minimum {min}"
            ));
        }
        if !outside.is_empty() {
            cx.push(
                Diagnostic::new(Code::ScheduleOutsideBounds, file, *span, format!("schedule `{}`: {}", s.name, outside.join(" and ")))
                    .label("outside the bounds")
                    .secondary(bounds_span, "the policy's bounds")
                    .help("a schedule floor wins over `replicas`; to move the bounds for the window, write `replicas A..B` in the schedule"),
            );
        }
    }
    schedule::conflicts(&schedules, file, cx.options.now, &mut cx.diags);
    if lints
        && rules.is_empty()
        && schedules.is_empty()
        && !policy.stmts.iter().any(|s| {
            matches!(
                s.node,
                Stmt::Track { .. } | Stmt::Desired(_) | Stmt::When { .. } | Stmt::Schedule(_)
            )
        })
    {
        cx.push(
            Diagnostic::new(
                Code::NoRules,
                file,
                policy.name.span,
                format!("policy `{name}` has no rule and no schedule"),
            )
            .label("never changes the replica count")
            .help("add a rule such as `track cpu at 50%`, or a schedule"),
        );
    }
    for (index, (metric, span)) in metric_defs.iter().enumerate() {
        if lints && !used_metrics.contains(&index) {
            cx.push(
                Diagnostic::new(
                    Code::UnusedName,
                    file,
                    *span,
                    format!("metric `{}` is never used", metric.name),
                )
                .label("unused")
                .help("use it in a rule or remove it: every metric is fetched at every tick"),
            );
        }
    }
    for (index, span) in let_spans.iter().enumerate() {
        if lints && !used_lets.contains(&index) {
            let name = lets.get(index).map_or("", |l| l.name.as_str());
            cx.push(
                Diagnostic::new(
                    Code::UnusedName,
                    file,
                    *span,
                    format!("`let {name}` is never used"),
                )
                .label("unused")
                .help("use it in a rule or remove it"),
            );
        }
    }

    let mut policy = model::Policy {
        name,
        target,
        min,
        max,
        every: every_value,
        metrics: metric_defs.into_iter().map(|(m, _)| m).collect(),
        lets,
        current_from,
        timezone,
        dry_run,
        rules,
        buffer,
        tolerance,
        on_missing,
        stabilize_up: stabilize_up.0,
        stabilize_down: stabilize_down.0,
        limits_up,
        limits_down,
        cooldown_up: cooldown_up.0,
        cooldown_down: cooldown_down.0,
        schedules: schedules.into_iter().map(|(s, _)| s).collect(),
    };
    policy.shrink_to_fit();
    Some(policy)
}

/// Statements that may appear once per policy, by the key that names them.
fn singleton_key(stmt: &Stmt) -> Option<String> {
    Some(match stmt {
        Stmt::Target { .. }
        | Stmt::Replicas { .. }
        | Stmt::Every(_)
        | Stmt::CurrentFrom(_)
        | Stmt::Timezone(_)
        | Stmt::DryRun
        | Stmt::Buffer(_)
        | Stmt::Tolerance(_)
        | Stmt::OnMissing(_)
        | Stmt::Stabilize { .. }
        | Stmt::Cooldown { .. } => stmt.keyword().to_string(),
        Stmt::Limit {
            direction,
            limit: Limit::SelectMin | Limit::SelectMax,
        } => format!("limit {} select", direction.as_str()),
        Stmt::Limit {
            direction,
            limit: Limit::Disabled,
        } => format!("limit {} disabled", direction.as_str()),
        _ => return None,
    })
}

pub(super) fn bounds_error(file: usize, span: Span, lo: u32, hi: u32) -> Diagnostic {
    Diagnostic::new(
        Code::InvalidBounds,
        file,
        span,
        format!("minimum {lo} is above maximum {hi}"),
    )
    .label("MIN > MAX")
    .help(format!("write `{hi}..{lo}`"))
}

fn out_of_range(file: usize, span: Span, message: &str, help: &str) -> Diagnostic {
    Diagnostic::new(Code::OutOfRange, file, span, message)
        .label("out of range")
        .help(help)
}

fn track_value(cx: &mut Lowering<'_>, q: &Node<ast::Quantity>) -> Option<f64> {
    let value = cx.take(values::evaluate(q, cx.file))?;
    if value.number <= 0.0 {
        cx.push(out_of_range(
            cx.file,
            q.span,
            "a `track` target must be above zero",
            "the target is what one replica should carry, e.g. `at 50%`",
        ));
        return None;
    }
    Some(value.number)
}

fn step_action(
    cx: &mut Lowering<'_>,
    q: &Node<ast::Quantity>,
    up: bool,
    place: &str,
) -> Option<WhenAction> {
    let value = cx.take(values::expect_count_or_percent(q, place, cx.file))?;
    let zero = matches!(value, CountOrPercent::Count(0))
        || matches!(value, CountOrPercent::Percent(p) if p <= 0.0);
    if zero {
        cx.push(out_of_range(
            cx.file,
            q.span,
            &format!("{place} must be more than zero"),
            "a step of zero never changes anything",
        ));
        return None;
    }
    if !up && matches!(value, CountOrPercent::Percent(p) if p > 1.0) {
        cx.push(out_of_range(
            cx.file,
            q.span,
            "`scale down by` cannot remove more than 100%",
            "`scale down by 100%` goes to zero (then to MIN)",
        ));
        return None;
    }
    Some(match (up, value) {
        (true, CountOrPercent::Count(n)) => WhenAction::UpBy(n),
        (false, CountOrPercent::Count(n)) => WhenAction::DownBy(n),
        (true, CountOrPercent::Percent(p)) => WhenAction::UpByPercent(p),
        (false, CountOrPercent::Percent(p)) => WhenAction::DownByPercent(p),
    })
}

fn amount_span(stmt: &Node<Stmt>) -> Span {
    match &stmt.node {
        Stmt::Limit {
            limit: Limit::Rate { amount, .. },
            ..
        } => amount.span,
        _ => stmt.span,
    }
}

fn amount_text(amount: RateAmount) -> String {
    match amount {
        RateAmount::Count(n) => n.to_string(),
        RateAmount::Percent(p) => format!("{}%", p * 100.0),
    }
}
