//! Properties of the engine over random inputs: counts stay within bounds, rate limits
//! are never exceeded over any window, no scale happens inside a cooldown unless a
//! schedule forces it, state stays bounded, and a replay decides the same.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration as TimeDelta, TimeZone, Utc};
use policyctl::check::{Options, check_text};
use policyctl::engine::{self, Input, Schedules, State};
use policyctl::model::Policy;
use proptest::prelude::*;

fn policy(text: &str) -> Policy {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 22, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let checked = check_text(text, &Options::at(now));
    assert!(checked.errors() == 0, "{:#?}", checked.diagnostics);
    checked
        .policies
        .into_iter()
        .next()
        .map(|c| c.policy)
        .unwrap_or_else(|| panic!("no policy"))
}

/// What happened at one tick of a run.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    at: DateTime<Utc>,
    from: u32,
    to: u32,
    floor: Option<u32>,
}

/// Run `policy` over `samples` (one row per tick, `every` apart), applying every decision.
fn run(
    policy: &Policy,
    start: DateTime<Utc>,
    initial: u32,
    samples: &[Vec<Option<f64>>],
) -> (Vec<Event>, Vec<u32>, State) {
    let mut state = State::new();
    let mut schedules = Schedules::new();
    let every = TimeDelta::from_std(policy.every).unwrap_or(TimeDelta::seconds(15));
    let mut current = initial;
    let mut events = Vec::new();
    let mut results = Vec::new();
    for (i, row) in samples.iter().enumerate() {
        let at = start + every * i as i32;
        let tick = engine::tick(
            policy,
            &mut schedules,
            &mut state,
            &Input {
                now: at,
                current,
                samples: row,
            },
        );
        let floor = tick
            .explanation
            .schedules
            .iter()
            .filter_map(|s| policy.schedules.get(*s).and_then(|s| s.effect.floor))
            .max();
        results.push(tick.explanation.result);
        if let Some(d) = tick.decision {
            assert_eq!((d.from, d.to), (current, tick.explanation.result));
            events.push(Event {
                at,
                from: d.from,
                to: d.to,
                floor,
            });
            current = d.to;
        }
        // One per tick of the longest window, and the first tick's record of `current`.
        let bound = 2
            + (policy.stabilize_up.max(policy.stabilize_down).as_secs()
                / policy.every.as_secs().max(1)) as usize;
        assert!(
            state.recommendations.len() <= bound,
            "{} recommendations kept, at most {bound} needed",
            state.recommendations.len()
        );
        assert!(
            state.events.len() <= 1 + 30 * 60 / policy.every.as_secs().max(1) as usize,
            "scale events are pruned"
        );
    }
    (events, results, state)
}

fn samples(metrics: usize, max: f64) -> impl Strategy<Value = Vec<Vec<Option<f64>>>> {
    let value = prop_oneof![9 => (0.0..max).prop_map(Some), 1 => Just(None)];
    prop::collection::vec(prop::collection::vec(value, metrics), 1..400)
}

fn start() -> impl Strategy<Value = DateTime<Utc>> {
    // Any time in 2026, so schedules are met at every phase.
    (0i64..365 * 24 * 60).prop_map(|m| {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + TimeDelta::minutes(m)
    })
}

const BOUNDED: &str = r#"policy "bounded" {
  target test "x"
  replicas 2..12
  metric cpu = prometheus "cpu"
  metric jobs = prometheus "jobs"
  track cpu at 50%
  track jobs per replica 5
  when cpu > 90% for 1m scale up by 3
  when cpu < 10% scale down by 50%
  on missing scale to 4 after 3
  stabilize down 1m
}"#;

const COUNT_LIMITED: &str = r#"policy "count" {
  target test "x"
  replicas 0..100
  metric x = prometheus "x"
  desired = x
  limit up 3 per 1m
  limit down 5 per 2m
  stabilize down 0s
}"#;

const PERCENT_LIMITED: &str = r#"policy "percent" {
  target test "x"
  replicas 1..100
  metric x = prometheus "x"
  desired = x
  limit up 50% per 1m
  limit down 20% per 1m
  stabilize down 0s
}"#;

const COOLDOWN: &str = r#"policy "cooldown" {
  target test "x"
  replicas 1..30
  metric x = prometheus "x"
  desired = x
  cooldown up 2m
  cooldown down 5m
  limit up 100 per 15s
  stabilize down 0s
  schedule "peak" {
    on daily from 12:00 to 13:00 in "UTC"
    replicas at least 20
  }
}"#;

/// The events of `events` in "the last D" before `at`: `at - D < t <= at`.
fn window(events: &[Event], at: DateTime<Utc>, d: TimeDelta) -> impl Iterator<Item = &Event> {
    events.iter().filter(move |e| e.at <= at && at - e.at < d)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn counts_stay_within_bounds(rows in samples(2, 80.0), initial in 2u32..=12, start in start()) {
        let p = policy(BOUNDED);
        let (_, results, _) = run(&p, start, initial, &rows);
        for r in results {
            prop_assert!((2..=12).contains(&r), "{r} outside 2..12");
        }
    }

    /// As in HPA, a limit bounds each scale event in its direction against the count at
    /// the start of its window, `now - D`: `limit up N per D` means no scale-up ends
    /// more than N above the count D ago. (A later scale-down may close a window whose
    /// net rise is larger: the limit speaks of scale-ups.)
    #[test]
    fn count_limits_hold_over_every_window(rows in samples(1, 100.0), initial in 0u32..100, start in start()) {
        let p = policy(COUNT_LIMITED);
        let (events, _, _) = run(&p, start, initial, &rows);
        for e in &events {
            if e.to > e.from {
                let net: i64 = window(&events, e.at, TimeDelta::minutes(1)).map(|w| i64::from(w.to) - i64::from(w.from)).sum();
                prop_assert!(net <= 3, "{net} added within a minute of {}: {events:?}", e.at);
            } else {
                let net: i64 = window(&events, e.at, TimeDelta::minutes(2)).map(|w| i64::from(w.to) - i64::from(w.from)).sum();
                prop_assert!(net >= -5, "{} removed within two minutes of {}: {events:?}", -net, e.at);
            }
        }
    }

    #[test]
    fn percent_limits_hold_over_every_window(rows in samples(1, 100.0), initial in 1u32..100, start in start()) {
        let p = policy(PERCENT_LIMITED);
        let (events, _, _) = run(&p, start, initial, &rows);
        for (i, e) in events.iter().enumerate() {
            // The count at the start of the window: undo this policy's earlier events in it.
            let earlier: i64 = window(&events[..i], e.at, TimeDelta::minutes(1)).map(|w| i64::from(w.to) - i64::from(w.from)).sum();
            let start = (i64::from(e.from) - earlier) as f64;
            if e.to > e.from {
                prop_assert!(f64::from(e.to) <= (start * 1.5 + 1e-9).ceil(), "{} -> {} from a start of {start}", e.from, e.to);
            } else {
                prop_assert!(f64::from(e.to) >= (start * 0.8 - 1e-9).trunc(), "{} -> {} from a start of {start}", e.from, e.to);
            }
        }
    }

    #[test]
    fn no_scale_inside_a_cooldown_unless_a_schedule_forces_it(rows in samples(1, 30.0), initial in 1u32..30, start in start()) {
        let p = policy(COOLDOWN);
        let (events, _, _) = run(&p, start, initial, &rows);
        for pair in events.windows(2) {
            let (last, e) = (&pair[0], &pair[1]);
            let since = e.at - last.at;
            let cooldown = if e.to > e.from { TimeDelta::minutes(2) } else { TimeDelta::minutes(5) };
            if since < cooldown {
                // Only a schedule floor may move the count now, and only up to the floor.
                let forced = e.to > e.from && e.floor.is_some_and(|f| e.to <= f);
                prop_assert!(forced, "{} -> {} at {}, {}s after the last scale event", e.from, e.to, e.at, since.num_seconds());
            }
        }
    }

    #[test]
    fn a_replay_decides_the_same(rows in samples(2, 80.0), initial in 2u32..=12, start in start()) {
        let p = policy(BOUNDED);
        let first = run(&p, start, initial, &rows);
        let second = run(&p, start, initial, &rows);
        prop_assert_eq!(first, second);
    }
}

#[test]
fn state_round_trips_through_serde() {
    let p = policy(BOUNDED);
    let rows: Vec<Vec<Option<f64>>> = (0..50)
        .map(|i| vec![Some(f64::from(i % 7) * 0.2), Some(f64::from(i))])
        .collect();
    let start = Utc
        .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .unwrap_or_default();
    let (_, _, state) = run(&p, start, 3, &rows);
    let json = serde_json::to_string(&state).unwrap_or_default();
    let back: State = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(back, state);
}
