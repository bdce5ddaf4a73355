//! Schedule blocks → `model::Schedule`, and the checks between schedules of one policy:
//! `exactly` counts that disagree and floors above ceilings, reported only when the
//! windows can really be active together (found on the time line through `calendar`).

use chrono::{DateTime, Duration as TimeDelta, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::calendar;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::model::{self, CronPattern, Effect, WindowKind};
use crate::syntax::ast::{self, DayItem, Node, SchedStmt};

use super::suggest::did_you_mean;
use super::values;

/// How far ahead periodic windows are laid out to look for overlaps: a little over a
/// year, so that every daylight-saving rule of both zones is met once.
const HORIZON_DAYS: i64 = 400;
/// Conflicts are searched over each window's first this many occurrences within the
/// horizon: all 400 days of a daily window, 83 days of an hourly cron, 33 hours of a
/// `* * * * *` one. A dense schedule's far future is not searched; what is found is
/// always real (docs/language.md).
const CONFLICT_INSTANCES: usize = 2_000;

pub fn zone(name: &Node<ast::Str>, file: usize, diags: &mut Vec<Diagnostic>) -> Option<Tz> {
    match name.value.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            let mut d = Diagnostic::new(
                Code::UnknownZone,
                file,
                name.span,
                format!("unknown time zone `{}`", name.value),
            )
            .label("not an IANA zone");
            d.help = did_you_mean(
                &name.value,
                chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()),
            )
            .or_else(|| {
                Some("use an IANA name such as `Europe/Berlin`, `Asia/Kolkata` or `UTC`".into())
            });
            diags.push(d);
            None
        }
    }
}

fn invalid_date(file: usize, span: Span, text: &str, what: &str) -> Diagnostic {
    Diagnostic::new(
        Code::InvalidDate,
        file,
        span,
        format!("`{text}` is not a valid {what}"),
    )
    .label("no such time")
    .help(match what {
        "time of day" => "times run from 00:00 to 23:59",
        _ => "dates are `YYYY-MM-DD`, with an optional `THH:MM`",
    })
}

fn clock(node: &Node<String>, file: usize, diags: &mut Vec<Diagnostic>) -> Option<NaiveTime> {
    let parsed = NaiveTime::parse_from_str(&node.node, "%H:%M");
    parsed
        .map_err(|_| diags.push(invalid_date(file, node.span, &node.node, "time of day")))
        .ok()
}

fn date(node: &Node<String>, file: usize, diags: &mut Vec<Diagnostic>) -> Option<NaiveDate> {
    let parsed = NaiveDate::parse_from_str(&node.node, "%Y-%m-%d");
    parsed
        .map_err(|_| diags.push(invalid_date(file, node.span, &node.node, "date")))
        .ok()
}

fn datetime(
    node: &Node<String>,
    file: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<NaiveDateTime> {
    let text = node.node.as_str();
    let parsed = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_time(NaiveTime::MIN))
        });
    parsed
        .map_err(|_| diags.push(invalid_date(file, node.span, text, "date and time")))
        .ok()
}

fn empty_window(file: usize, span: Span, message: String) -> Diagnostic {
    Diagnostic::new(Code::EmptyWindow, file, span, message)
        .label("never active")
        .help("a window runs from `from` (inclusive) to `to` (exclusive); an earlier `to` crosses midnight")
}

pub fn lower(
    s: &ast::Schedule,
    span: Span,
    default_zone: Tz,
    file: usize,
    now: DateTime<Utc>,
    diags: &mut Vec<Diagnostic>,
) -> Option<model::Schedule> {
    let errors_before = diags.len();
    let mut windows = Vec::new();
    let mut effect = Effect::default();
    let mut effects = 0;
    let mut had_syntax_error = false;
    let mut exactly_span: Option<Span> = None;
    for stmt in &s.stmts {
        match &stmt.node {
            SchedStmt::Error => had_syntax_error = true,
            SchedStmt::Window(w) => {
                if let Some(window) = window(w, stmt.span, default_zone, file, now, diags) {
                    windows.push(window);
                }
            }
            SchedStmt::Effect(e) => {
                effects += 1;
                apply_effect(e, stmt.span, &mut effect, &mut exactly_span, file, diags);
            }
        }
    }
    let has_windows = s
        .stmts
        .iter()
        .any(|st| matches!(st.node, SchedStmt::Window(_)));
    if !had_syntax_error && (!has_windows || effects == 0) {
        let missing = if has_windows {
            "an effect such as `replicas at least 4`"
        } else {
            "a window such as `on mon..fri from 08:00 to 18:00`"
        };
        diags.push(
            Diagnostic::new(
                Code::EmptySchedule,
                file,
                s.name.span,
                format!(
                    "schedule `{}` has no {}",
                    s.name.value,
                    if has_windows { "effect" } else { "window" }
                ),
            )
            .label("incomplete")
            .secondary(span, "the schedule")
            .help(format!("add {missing}")),
        );
    }
    if let (Some(floor), Some(ceiling)) = (effect.floor, effect.ceiling)
        && floor > ceiling
        && effect.exactly.is_none()
    {
        diags.push(
            Diagnostic::new(
                Code::ScheduleConflict,
                file,
                s.name.span,
                format!(
                    "schedule `{}` sets a floor of {floor} above its ceiling of {ceiling}",
                    s.name.value
                ),
            )
            .label("contradicts itself")
            .help("the floor would win; lower it or raise the ceiling"),
        );
    }
    (diags.len() == errors_before
        || diags[errors_before..]
            .iter()
            .all(|d| d.severity == crate::diagnostic::Severity::Warning))
    .then(|| model::Schedule {
        name: s.name.value.clone(),
        windows,
        effect,
    })
}

fn apply_effect(
    e: &ast::Effect,
    span: Span,
    effect: &mut Effect,
    exactly_span: &mut Option<Span>,
    file: usize,
    diags: &mut Vec<Diagnostic>,
) {
    let mut count = |q: &Node<ast::Quantity>| {
        values::expect_count(q, "a schedule's `replicas`", file)
            .map_err(|d| diags.push(d))
            .ok()
    };
    let raise = |slot: &mut Option<u32>, n: u32| *slot = Some(slot.map_or(n, |v| v.max(n)));
    let lower = |slot: &mut Option<u32>, n: u32| *slot = Some(slot.map_or(n, |v| v.min(n)));
    match e {
        ast::Effect::AtLeast(q) => {
            if let Some(n) = count(q) {
                raise(&mut effect.floor, n);
            }
        }
        ast::Effect::AtMost(q) => {
            if let Some(n) = count(q) {
                lower(&mut effect.ceiling, n);
            }
        }
        ast::Effect::Exactly(q) => {
            if let Some(n) = count(q) {
                if let (Some(previous), Some(first)) = (effect.exactly, *exactly_span)
                    && previous != n
                {
                    diags.push(
                            Diagnostic::new(Code::ExactlyConflict, file, span, format!("`replicas exactly {n}` disagrees with `replicas exactly {previous}` in the same schedule"))
                                .label("second count")
                                .secondary(first, "first count")
                                .help("keep one count"),
                        );
                }
                effect.exactly = Some(n);
                *exactly_span = Some(span);
                raise(&mut effect.floor, n);
                lower(&mut effect.ceiling, n);
            }
        }
        ast::Effect::Range(a, b) => {
            let (lo, hi) = (count(a), count(b));
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if lo > hi {
                    diags.push(super::policy::bounds_error(file, a.span.to(b.span), lo, hi));
                    return;
                }
                effect.range = Some(match effect.range {
                    Some((a0, b0)) => (a0.max(lo), b0.min(hi)),
                    None => (lo, hi),
                });
                raise(&mut effect.floor, lo);
                lower(&mut effect.ceiling, hi);
            }
        }
    }
}

fn window(
    w: &ast::Window,
    span: Span,
    default_zone: Tz,
    file: usize,
    now: DateTime<Utc>,
    diags: &mut Vec<Diagnostic>,
) -> Option<model::Window> {
    let zone = match &w.zone {
        Some(z) => zone(z, file, diags)?,
        None => default_zone,
    };
    let except: Vec<NaiveDate> = w
        .except
        .iter()
        .filter_map(|d| date(d, file, diags))
        .collect();
    if except.len() != w.except.len() {
        return None;
    }
    let kind = match &w.kind {
        ast::WindowKind::Weekly { days, from, to } => {
            let (open, close) = (clock(from, file, diags), clock(to, file, diags));
            let (open, close) = (open?, close?);
            if open == close {
                diags.push(empty_window(
                    file,
                    from.span.to(to.span),
                    format!("the window starts and ends at {}", from.node),
                ));
                return None;
            }
            let mut mask = [false; 7];
            for day in days {
                match day.node {
                    DayItem::Daily => mask = [true; 7],
                    DayItem::Day(d) => mask[usize::from(d % 7)] = true,
                    DayItem::Range(a, b) => {
                        let mut d = a % 7;
                        loop {
                            mask[usize::from(d)] = true;
                            if d == b % 7 {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                }
            }
            WindowKind::Weekly {
                days: mask,
                from: open,
                to: close,
            }
        }
        ast::WindowKind::OneOff { from, to } => {
            let (open, close) = (datetime(from, file, diags), datetime(to, file, diags));
            let (open, close) = (open?, close?);
            if open >= close {
                let message = if open == close {
                    format!("the window starts and ends at {}", from.node)
                } else {
                    format!(
                        "the window ends ({}) before it starts ({})",
                        to.node, from.node
                    )
                };
                diags.push(empty_window(file, from.span.to(to.span), message));
                return None;
            }
            WindowKind::OneOff {
                from: open,
                to: close,
            }
        }
        ast::WindowKind::Cron { expr, duration } => {
            let pattern = match CronPattern::parse(&expr.value) {
                Ok(p) => Some(p),
                Err(reason) => {
                    diags.push(
                        Diagnostic::new(Code::InvalidCron, file, expr.span, format!("invalid cron expression `{}`", expr.value))
                            .label(reason)
                            .help("five fields: minute hour day-of-month month day-of-week, e.g. `0 2 * * *`"),
                    );
                    None
                }
            };
            let length = values::expect_duration(duration, "a cron window's `for`", file)
                .map_err(|d| diags.push(d))
                .ok();
            let (pattern, length) = (pattern?, length?);
            if length.is_zero() {
                diags.push(empty_window(
                    file,
                    duration.span,
                    "the cron window lasts 0s".into(),
                ));
                return None;
            }
            WindowKind::Cron {
                pattern: Box::new(pattern),
                duration: length,
            }
        }
    };
    let window = model::Window { kind, zone, except };
    if let WindowKind::OneOff { to, .. } = &window.kind
        && calendar::resolve_end(zone, *to) <= now
    {
        diags.push(
            Diagnostic::new(
                Code::PastSchedule,
                file,
                span,
                "this one-off window is wholly in the past",
            )
            .label(format!("ended before {}", now.format("%Y-%m-%d %H:%M UTC")))
            .help("remove it, or move it to its next date"),
        );
    }
    Some(window)
}

/// The range searched for overlaps: from a little before `now` to `HORIZON_DAYS` after
/// it, and over the whole of any one-off window.
fn search_range<'a>(
    schedules: impl Iterator<Item = &'a model::Schedule>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let mut from = now - TimeDelta::days(1);
    let mut to = now + TimeDelta::days(HORIZON_DAYS);
    for w in schedules.flat_map(|s| &s.windows) {
        if let WindowKind::OneOff {
            from: open,
            to: close,
        } = w.kind
        {
            from = from.min(calendar::resolve_start(w.zone, open));
            to = to.max(calendar::resolve_end(w.zone, close));
        }
    }
    (from, to)
}

/// The first instant at which two schedules, given as their merged occurrences, are
/// both active: one linear merge of the two lists.
fn first_overlap(xs: &[calendar::Interval], ys: &[calendar::Interval]) -> Option<DateTime<Utc>> {
    let (mut i, mut j) = (0, 0);
    while let (Some(x), Some(y)) = (xs.get(i), ys.get(j)) {
        if x.overlaps(y) {
            return Some(x.start.max(y.start));
        }
        if x.end <= y.end { i += 1 } else { j += 1 }
    }
    None
}

pub fn conflicts(
    schedules: &[(model::Schedule, Span)],
    file: usize,
    now: DateTime<Utc>,
    diags: &mut Vec<Diagnostic>,
) {
    // Each schedule's occurrences are laid out once, on intervals, and only for
    // schedules that take part in some conflicting pair; each pair is then a merge.
    let conflicting = |a: &model::Schedule, b: &model::Schedule| {
        let exactly = matches!((a.effect.exactly, b.effect.exactly), (Some(x), Some(y)) if x != y);
        let crossed = |f: &Effect, c: &Effect| matches!((f.floor, c.ceiling), (Some(fl), Some(ce)) if fl > ce);
        exactly || crossed(&a.effect, &b.effect) || crossed(&b.effect, &a.effect)
    };
    let needed: Vec<bool> = (0..schedules.len())
        .map(|k| {
            (0..schedules.len()).any(|l| l != k && conflicting(&schedules[k].0, &schedules[l].0))
        })
        .collect();
    let (from, to) = search_range(
        schedules
            .iter()
            .zip(&needed)
            .filter(|(_, n)| **n)
            .map(|((s, _), _)| s),
        now,
    );
    let occurrences: Vec<Vec<calendar::Interval>> = schedules
        .iter()
        .zip(&needed)
        .map(|((s, _), n)| {
            if *n {
                calendar::occurrences_upto(&s.windows, from, to, CONFLICT_INSTANCES)
            } else {
                Vec::new()
            }
        })
        .collect();
    for (j, (b, b_span)) in schedules.iter().enumerate() {
        for (k, (a, a_span)) in schedules[..j].iter().enumerate() {
            let exactly =
                matches!((a.effect.exactly, b.effect.exactly), (Some(x), Some(y)) if x != y);
            let crossed = |f: &Effect, c: &Effect| matches!((f.floor, c.ceiling), (Some(fl), Some(ce)) if fl > ce);
            let conflict = crossed(&a.effect, &b.effect) || crossed(&b.effect, &a.effect);
            if !exactly && !conflict {
                continue;
            }
            let Some(at) = first_overlap(&occurrences[k], &occurrences[j]) else {
                continue;
            };
            let when = format!("both are active at {}", at.format("%Y-%m-%d %H:%M UTC"));
            let diagnostic = if exactly {
                Diagnostic::new(
                    Code::ExactlyConflict,
                    file,
                    *b_span,
                    format!("schedules `{}` and `{}` can overlap and ask for exactly {} and exactly {} replicas", a.name, b.name, a.effect.exactly.unwrap_or(0), b.effect.exactly.unwrap_or(0)),
                )
                .label(when)
                .secondary(*a_span, "overlaps this one")
                .help("make the windows disjoint, or agree on one count")
            } else {
                let (floor_of, ceiling_of) = if crossed(&a.effect, &b.effect) {
                    (a, b)
                } else {
                    (b, a)
                };
                Diagnostic::new(
                    Code::ScheduleConflict,
                    file,
                    *b_span,
                    format!(
                        "schedule `{}` puts a floor of {} above the ceiling of {} set by `{}` while both are active",
                        floor_of.name,
                        floor_of.effect.floor.unwrap_or(0),
                        ceiling_of.effect.ceiling.unwrap_or(0),
                        ceiling_of.name
                    ),
                )
                .label(when)
                .secondary(*a_span, "overlaps this one")
                .help("the floor would win; make the windows disjoint or the counts compatible")
            };
            diags.push(diagnostic);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::calendar::LAID_OUT;
    use crate::check::{Options, check_text};
    use chrono::{TimeZone, Utc};

    #[test]
    fn each_schedule_is_laid_out_once_however_many_pairs_can_conflict() {
        // 50 schedules that all disagree pairwise: 1,225 pairs. Each pair used to lay
        // out both schedules over 400 days (20 cron schedules took ~39 s).
        let mut text = String::from(
            "policy \"p\" {\n  target k8s \"a/b/c\"\n  replicas 1..100\n  desired = 1\n",
        );
        for i in 0..50 {
            text.push_str(&format!(
                "  schedule \"s{i}\" {{\n    cron \"{i} 3 * * *\" for 1m\n    replicas exactly {}\n  }}\n",
                i + 1
            ));
        }
        text.push_str("}\n");
        let now = Utc
            .with_ymd_and_hms(2026, 11, 22, 0, 0, 0)
            .single()
            .unwrap_or_default();
        LAID_OUT.with(|n| n.set(0));
        let checked = check_text(&text, &Options::at(now));
        let laid_out = LAID_OUT.with(std::cell::Cell::get);
        assert!(laid_out <= 50, "schedules laid out {laid_out} times");
        // Minute `i` of 03:00 every day never meets minute `j`: no conflict is reported.
        assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    }
}
