//! `cargo bench --bench engine`:
//! - 30 days at 15 s (172,800 ticks) through one policy: goal under 0.1 s;
//! - one tick of 10,000 policies: goal under 20 ms;
//! - one tick of the 10,000 policies of `cargo bench --bench serve` (the same load, the
//!   count following each decision): the engine alone, warm in the caches, beside the
//!   service's `policyctl_engine_seconds` for the same fleet.
//!
//! All through the real `engine::tick`, with schedules, limits and stabilisation on.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chrono::{Duration as TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use policyctl::check::{Options, check_text};
use policyctl::engine::{self, Input, Schedules, State};
use policyctl::model::Policy;
use policyctl::sim::{self, Row, Trace};

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

const POLICY: &str = r#"policy "bench" {
  target k8s "web/deployment/web"
  replicas 2..50
  timezone "Europe/Berlin"
  metric cpu = prometheus "cpu"
  metric jobs = prometheus "jobs"
  let per_pod = jobs / max(current, 1)
  track cpu at 50%
  track jobs per replica 5
  when per_pod > 20 for 2m scale up by 2
  stabilize down 5m
  limit up 4 per 1m
  limit down 20% per 1m
  cooldown down 2m
  schedule "business-hours" {
    on mon..fri from 08:00 to 18:00
    replicas at least 6
  }
}"#;

fn policy(name: &str) -> Policy {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 22, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let text = POLICY.replace("\"bench\"", &format!("\"{name}\""));
    let checked = check_text(&text, &Options::at(now));
    checked
        .policies
        .into_iter()
        .next()
        .map(|c| c.policy)
        .unwrap_or_else(|| panic!("{:?}", checked.diagnostics))
}

fn load(i: usize) -> (f64, f64) {
    let x = i as f64;
    (
        0.5 + 0.4 * (x / 2000.0).sin(),
        60.0 + 50.0 * (x / 3000.0).cos(),
    )
}

fn bench(c: &mut Criterion) {
    let start = Utc
        .with_ymd_and_hms(2026, 3, 2, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let ticks = 30 * 24 * 60 * 4;
    let p = policy("bench");
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);

    group.bench_function("30 days at 15s, one policy (172800 ticks)", |b| {
        b.iter(|| {
            let mut state = State::new();
            let mut schedules = Schedules::new();
            let mut current = 2;
            let mut samples = [None, None];
            for i in 0..ticks {
                let (cpu, jobs) = load(i);
                samples = [Some(cpu), Some(jobs)];
                let now = start + TimeDelta::seconds(15 * i as i64);
                let tick = engine::tick(
                    &p,
                    &mut schedules,
                    &mut state,
                    &Input {
                        now,
                        current,
                        samples: &samples,
                    },
                );
                if let Some(d) = tick.decision {
                    current = d.to;
                }
            }
            black_box((current, samples))
        })
    });

    // The same month through `simulate`'s runner, trace lookup included.
    let rows = (0..ticks)
        .map(|i| {
            let (cpu, jobs) = load(i);
            Row {
                at: start + TimeDelta::seconds(15 * i as i64),
                values: vec![Some(cpu), Some(jobs)],
            }
        })
        .collect();
    let trace = Trace {
        columns: vec!["cpu".into(), "jobs".into()],
        rows,
    };
    group.bench_function("simulate 30 days at 15s (172800 ticks)", |b| {
        b.iter(|| {
            let mut decisions = 0usize;
            let _ = sim::run(&p, &trace, &sim::Options::default(), |v| {
                decisions += usize::from(v.tick.decision.is_some())
            });
            black_box(decisions)
        })
    });

    let policies: Vec<Policy> = (0..10_000).map(|i| policy(&format!("p{i}"))).collect();
    let mut states: Vec<State> = vec![State::new(); policies.len()];
    let mut caches: Vec<Schedules> = vec![Schedules::new(); policies.len()];
    let now = start + TimeDelta::hours(9);
    // Warm the schedule caches and histories with a first tick, as a running service has.
    for ((p, s), c) in policies.iter().zip(&mut states).zip(&mut caches) {
        engine::tick(
            p,
            c,
            s,
            &Input {
                now: now - TimeDelta::seconds(15),
                current: 4,
                samples: &[Some(0.6), Some(40.0)],
            },
        );
    }
    group.bench_function("one tick of 10000 policies", |b| {
        b.iter(|| {
            let mut changed = 0usize;
            for ((p, s), c) in policies.iter().zip(&mut states).zip(&mut caches) {
                let mut state = s.clone();
                let tick = engine::tick(
                    p,
                    c,
                    &mut state,
                    &Input {
                        now,
                        current: 4,
                        samples: &[Some(0.6), Some(40.0)],
                    },
                );
                changed += usize::from(tick.decision.is_some());
            }
            black_box(changed)
        })
    });

    // The fleet of `cargo bench --bench serve`: three one-metric shapes, every 10s, the
    // load of its trace (20 to 38, a new value each round).
    let fleet: Vec<Policy> = (0..10_000)
        .map(|i| {
            let checked = check_text(&common::service::policy(i, "10s"), &Options::at(start));
            checked.policies.into_iter().next().unwrap().policy
        })
        .collect();
    let mut fleet_state: Vec<(State, Schedules, u32)> =
        vec![(State::new(), Schedules::new(), 2); fleet.len()];
    let mut round = 0i64;
    let mut tick_fleet = |fleet_state: &mut Vec<(State, Schedules, u32)>| {
        round += 1;
        let now = start + TimeDelta::seconds(10 * round);
        let q = f64::from(20 + u32::try_from((10 * round) % 7).unwrap() * 3);
        let mut changed = 0usize;
        for (p, (s, c, current)) in fleet.iter().zip(fleet_state.iter_mut()) {
            let tick = engine::tick(
                p,
                c,
                s,
                &Input {
                    now,
                    current: *current,
                    samples: &[Some(q)],
                },
            );
            if let Some(d) = &tick.decision {
                *current = d.to;
                changed += 1;
            }
        }
        changed
    };
    // Histories as two rounds of the service leave them.
    tick_fleet(&mut fleet_state);
    tick_fleet(&mut fleet_state);
    group.bench_function("one tick of the serve bench's 10000 policies", |b| {
        b.iter(|| black_box(tick_fleet(&mut fleet_state)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
