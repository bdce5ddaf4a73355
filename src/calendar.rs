//! Schedule windows on the real time line: turns local wall-clock windows (weekly,
//! one-off, cron) in an IANA zone into intervals of instants, with the daylight-saving
//! rules of the language reference (§5). Pure calendar arithmetic: no clock, no I/O.
//!
//! - A local time in a gap resolves to the first instant after the gap.
//! - A local time that occurs twice resolves to its first occurrence for a start, and
//!   its last occurrence for an end. A cron fire time that occurs twice fires once.

use chrono::{
    DateTime, Datelike, Duration as TimeDelta, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::model::{Window, WindowKind};

/// A half-open interval of instants: active from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// At most this many occurrences are produced by one call, whatever the range: a
/// `* * * * *` cron over years must not exhaust memory.
pub const MAX_INSTANCES: usize = 200_000;

#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

fn resolve(zone: Tz, local: NaiveDateTime, edge: Edge) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, last) => match edge {
            Edge::Start => first.with_timezone(&Utc),
            Edge::End => last.with_timezone(&Utc),
        },
        LocalResult::None => after_gap(zone, local),
    }
}

/// The first instant after the gap that `local` falls in. Real transitions happen on
/// whole minutes, so the first valid local minute after `local` is the transition.
fn after_gap(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    for _ in 0..(26 * 60) {
        probe += TimeDelta::minutes(1);
        if let Some(t) = zone.from_local_datetime(&probe).earliest() {
            // `probe` is the first valid minute; seconds inside `local` carry over.
            return t.with_timezone(&Utc);
        }
    }
    // No zone has a gap longer than a day; read the wall clock as UTC rather than fail.
    Utc.from_utc_datetime(&local)
}

/// The instant at which a window starting at `local` opens.
pub fn resolve_start(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    resolve(zone, local, Edge::Start)
}

/// The instant at which a window ending at `local` closes.
pub fn resolve_end(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    resolve(zone, local, Edge::End)
}

fn local_date(zone: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// The occurrences of `window` that overlap `[from, to)`, sorted by start.
pub fn instances(window: &Window, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    instances_upto(window, from, to, MAX_INSTANCES)
}

/// [`instances`], but at most the first `cap` of them.
pub fn instances_upto(
    window: &Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cap: usize,
) -> Vec<Interval> {
    let cap = cap.min(MAX_INSTANCES);
    let range = Interval {
        start: from,
        end: to,
    };
    let mut out = Vec::new();
    let skipped = |day: NaiveDate| window.except.contains(&day);
    match &window.kind {
        WindowKind::Weekly {
            days,
            from: open,
            to: close,
        } => {
            // A window that starts the day before `from` may still be running.
            let Some(first) = local_date(window.zone, from).pred_opt() else {
                return out;
            };
            let last = local_date(window.zone, to);
            let mut day = first;
            while day <= last && out.len() < cap {
                let weekday = day.weekday().num_days_from_monday() as usize;
                if days.get(weekday).copied().unwrap_or(false) && !skipped(day) {
                    let end_day = if close > open {
                        Some(day)
                    } else {
                        day.succ_opt()
                    };
                    if let Some(end_day) = end_day {
                        let interval = Interval {
                            start: resolve_start(window.zone, day.and_time(*open)),
                            end: resolve_end(window.zone, end_day.and_time(*close)),
                        };
                        if interval.start < interval.end && interval.overlaps(&range) {
                            out.push(interval);
                        }
                    }
                }
                let Some(next) = day.succ_opt() else { break };
                day = next;
            }
        }
        WindowKind::OneOff {
            from: open,
            to: close,
        } => {
            let interval = Interval {
                start: resolve_start(window.zone, *open),
                end: resolve_end(window.zone, *close),
            };
            if !skipped(open.date()) && interval.start < interval.end && interval.overlaps(&range) {
                out.push(interval);
            }
        }
        WindowKind::Cron { pattern, duration } => {
            let Ok(length) = TimeDelta::from_std(*duration) else {
                return out;
            };
            // Fire times are matched on the wall clock; a day of margin on each side
            // covers any daylight-saving shift between local and universal time.
            let mut local = (from - length - TimeDelta::days(1))
                .with_timezone(&window.zone)
                .naive_local();
            let stop = (to + TimeDelta::days(1))
                .with_timezone(&window.zone)
                .naive_local();
            let mut inclusive = true;
            while out.len() < cap {
                let Ok(fire) = pattern.cron.find_next_occurrence(&local, inclusive) else {
                    break;
                };
                if fire > stop {
                    break;
                }
                inclusive = false;
                local = fire;
                if skipped(fire.date()) {
                    continue;
                }
                let start = resolve_start(window.zone, fire);
                let interval = Interval {
                    start,
                    end: start + length,
                };
                if interval.overlaps(&range) {
                    out.push(interval);
                }
            }
            // Two fire times in a gap resolve to the same instant: fire once.
            out.sort();
            out.dedup_by_key(|i| i.start);
        }
    }
    out
}

/// The occurrences of any of `windows` that overlap `[from, to)`, sorted, with
/// overlapping or touching ones merged: when a schedule with these windows is active.
pub fn occurrences(windows: &[Window], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    occurrences_upto(windows, from, to, MAX_INSTANCES)
}

/// [`occurrences`] of at most the first `cap` instances of each window.
pub fn occurrences_upto(
    windows: &[Window],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cap: usize,
) -> Vec<Interval> {
    #[cfg(test)]
    LAID_OUT.with(|n| n.set(n.get() + 1));
    let mut all: Vec<Interval> = windows
        .iter()
        .flat_map(|w| instances_upto(w, from, to, cap))
        .collect();
    all.sort();
    let mut merged: Vec<Interval> = Vec::with_capacity(all.len());
    for interval in all {
        match merged.last_mut() {
            Some(last) if interval.start <= last.end => last.end = last.end.max(interval.end),
            _ => merged.push(interval),
        }
    }
    merged
}

/// The occurrence of `window` that contains `at`, if any.
pub fn active_at(window: &Window, at: DateTime<Utc>) -> Option<Interval> {
    let end = at + TimeDelta::seconds(1);
    let start = match &window.kind {
        WindowKind::OneOff { .. } => at,
        _ => at - TimeDelta::days(1),
    };
    instances(window, start, end)
        .into_iter()
        .find(|i| i.contains(at))
}

#[cfg(test)]
thread_local! {
    /// How many times `occurrences` ran on this thread (tests count the work).
    pub static LAID_OUT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CronPattern;
    use chrono::NaiveTime;

    fn berlin() -> Tz {
        chrono_tz::Europe::Berlin
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn daily(zone: Tz, from: &str, to: &str) -> Window {
        let time = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap_or_default();
        Window {
            kind: WindowKind::Weekly {
                days: [true; 7],
                from: time(from),
                to: time(to),
            },
            zone,
            except: vec![],
        }
    }

    #[test]
    fn fall_back_window_runs_two_real_hours() {
        // 2026-10-25: Berlin goes from 03:00 CEST back to 02:00 CET.
        let w = daily(berlin(), "02:30", "03:30");
        let got = instances(&w, utc("2026-10-25T00:00:00Z"), utc("2026-10-25T12:00:00Z"));
        assert_eq!(
            got,
            vec![Interval {
                start: utc("2026-10-25T00:30:00Z"),
                end: utc("2026-10-25T02:30:00Z")
            }]
        );
    }

    #[test]
    fn spring_forward_window_starts_after_the_gap() {
        // 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST.
        let w = daily(berlin(), "02:30", "03:30");
        let got = instances(&w, utc("2026-03-29T00:00:00Z"), utc("2026-03-29T12:00:00Z"));
        assert_eq!(
            got,
            vec![Interval {
                start: utc("2026-03-29T01:00:00Z"),
                end: utc("2026-03-29T01:30:00Z")
            }]
        );
    }

    #[test]
    fn overnight_window_belongs_to_its_start_day() {
        let time = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or_default();
        let mut days = [false; 7];
        days[4] = true; // Friday
        let w = Window {
            kind: WindowKind::Weekly {
                days,
                from: time(22),
                to: time(2),
            },
            zone: Tz::UTC,
            except: vec![],
        };
        // 2026-11-20 is a Friday.
        assert!(active_at(&w, utc("2026-11-21T01:59:00Z")).is_some());
        assert!(active_at(&w, utc("2026-11-21T02:00:00Z")).is_none());
        assert!(active_at(&w, utc("2026-11-20T01:00:00Z")).is_none());
    }

    #[test]
    fn cron_in_a_gap_fires_once_after_it() {
        let pattern = CronPattern::parse("30 2 * * *").unwrap_or_else(|e| unreachable!("{e}"));
        let w = Window {
            kind: WindowKind::Cron {
                pattern: Box::new(pattern),
                duration: std::time::Duration::from_secs(3600),
            },
            zone: berlin(),
            except: vec![],
        };
        let got = instances(&w, utc("2026-03-29T00:00:00Z"), utc("2026-03-29T06:00:00Z"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].start, utc("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn cron_day_fields_match_either_way_with_names_and_sunday_as_0_or_7() {
        let fires = |expr: &str| {
            let pattern = CronPattern::parse(expr).unwrap_or_else(|e| unreachable!("{e}"));
            let w = Window {
                kind: WindowKind::Cron {
                    pattern: Box::new(pattern),
                    duration: std::time::Duration::from_secs(60),
                },
                zone: Tz::UTC,
                except: vec![],
            };
            instances(&w, utc("2026-03-01T00:00:00Z"), utc("2026-04-01T00:00:00Z"))
                .iter()
                .map(|i| i.start.format("%d").to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        // The 13th, or any Friday (crontab(5): both restricted, either matches).
        assert_eq!(fires("0 0 13 * 5"), "06 13 20 27");
        assert_eq!(fires("0 0 13 * fri"), "06 13 20 27");
        // Sunday is 0 and 7.
        assert_eq!(fires("0 0 * * 0"), "01 08 15 22 29");
        assert_eq!(fires("0 0 * * 7"), "01 08 15 22 29");
        assert_eq!(fires("0 0 * mar sun"), "01 08 15 22 29");
    }

    #[test]
    fn cron_twice_in_an_overlap_fires_once() {
        let pattern = CronPattern::parse("30 2 * * *").unwrap_or_else(|e| unreachable!("{e}"));
        let w = Window {
            kind: WindowKind::Cron {
                pattern: Box::new(pattern),
                duration: std::time::Duration::from_secs(600),
            },
            zone: berlin(),
            except: vec![],
        };
        let got = instances(&w, utc("2026-10-24T22:00:00Z"), utc("2026-10-25T06:00:00Z"));
        assert_eq!(
            got,
            vec![Interval {
                start: utc("2026-10-25T00:30:00Z"),
                end: utc("2026-10-25T00:40:00Z")
            }]
        );
    }
}
