//! `cargo bench --bench serve`: the service with 10,000 policies on the `file` source.
//! - one round of 10,000 policy ticks through the service (fetch from the source,
//!   current count, engine, publish): the engine's share is reported from
//!   `policyctl_engine_seconds` (goal: under 20 ms of engine time per round);
//! - resident memory with the 10,000 policies loaded and ticked (goal under 100 MB);
//! - hot-reload latency: from a new policy file written to its first decision, with the
//!   watcher and the scheduler running (goal under 200 ms).

// Benchmark code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use policyctl::serve::{Service, policies};

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

const POLICIES: usize = 10_000;
fn value(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The engine's time per round between two renderings of `/metrics`.
fn engine_time(before: &str, after: &str) -> String {
    let sum = value(after, "policyctl_engine_seconds_sum")
        - value(before, "policyctl_engine_seconds_sum");
    let count = value(after, "policyctl_engine_seconds_count")
        - value(before, "policyctl_engine_seconds_count");
    let mean = sum / count.max(1.0);
    format!(
        "{:.1} ms (mean {:.2} µs per policy tick over {count:.0} ticks)",
        mean * POLICIES as f64 * 1000.0,
        mean * 1e6
    )
}

fn rss_mib() -> f64 {
    common::service::resident_mib("VmRSS:")
}

fn bench(c: &mut Criterion) {
    let dir = support::scratch("bench-serve");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let before = rss_mib();
    let service = common::service::service(
        &dir,
        POLICIES,
        "10s",
        &support::plugins().0.join("policyctl_record.wasm"),
    );
    let service_only = rss_mib();
    let loaded = Instant::now();
    tokio.block_on(policies::reload(&service));
    let slots = service.all_slots();
    assert_eq!(slots.len(), POLICIES);
    let after_load = rss_mib();
    eprintln!(
        "loaded and checked {POLICIES} policies in {:.0} ms",
        loaded.elapsed().as_secs_f64() * 1000.0
    );
    // A virtual clock: each round is one `every` (10 s) after the last, so histories
    // (stabilisation, rate limits) hold what they would in production.
    let clock = std::cell::Cell::new(chrono::Utc::now());
    let next = || {
        let at = clock.get() + chrono::Duration::seconds(10);
        clock.set(at);
        at
    };
    let round = |service: &Arc<Service>| {
        let at = next();
        tokio.block_on(futures::future::join_all(
            slots.iter().map(|s| service.tick_at(s, at)),
        ));
    };
    // The first round asks the plugin to observe (it cannot: `record` before any
    // decision); later rounds use the count the service keeps.
    round(&service);
    round(&service);
    // The figure to hold against the goal: state as production holds it (a tick per
    // `every`, so a 5m stabilisation window keeps 30 recommendations).
    eprintln!(
        "resident memory with {POLICIES} policies loaded and ticked twice: {:.1} MiB (goal < 100 MB; {:.1} MiB with no policy)",
        rss_mib(),
        service_only
    );

    // Engine CPU without contention: rounds on one thread, timed by the service's own
    // `policyctl_engine_seconds`.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before_single = service.metrics.render();
    for _ in 0..10 {
        let at = next();
        single.block_on(futures::future::join_all(
            slots.iter().map(|s| service.tick_at(s, at)),
        ));
    }
    eprintln!(
        "engine time per round of {POLICIES} policies, one thread: {} (goal < 20 ms)",
        engine_time(&before_single, &service.metrics.render())
    );

    let metrics_before = service.metrics.render();
    let mut group = c.benchmark_group("serve");
    group.sample_size(10);
    group.bench_function("one round of 10,000 policy ticks (file source)", |b| {
        b.iter(|| round(&service));
    });
    group.finish();
    eprintln!(
        "engine time per round of {POLICIES} policies, both cores ticking: {}",
        engine_time(&metrics_before, &service.metrics.render())
    );
    eprintln!(
        "resident memory after the timed rounds: {:.1} MiB ({after_load:.1} MiB after loading; {before:.1} MiB before setup)",
        rss_mib()
    );

    // The decision history at its size in production: rounds until every policy's ring
    // holds its full hour (360 ticks at `every 10s`).
    let ring = policyctl::serve::history::capacity(
        Duration::from_secs(10),
        policyctl::serve::history::KEEP,
    );
    let kept = || slots.iter().map(|s| s.history_len()).sum::<usize>();
    let (before_history, kept_before) = (rss_mib(), kept());
    let filled = Instant::now();
    for _ in 0..ring {
        round(&service);
    }
    let (full, kept_after) = (rss_mib(), kept());
    assert_eq!(kept_after, ring * POLICIES, "every ring is full");
    eprintln!(
        "resident memory with a full hour of history ({ring} ticks x {POLICIES} policies): {full:.1} MiB; the last {} ticks kept cost {:.1} MiB, {:.0} bytes each ({ring} rounds in {:.1} s)",
        kept_after - kept_before,
        full - before_history,
        (full - before_history) * 1024.0 * 1024.0 / (kept_after - kept_before).max(1) as f64,
        filled.elapsed().as_secs_f64()
    );

    // Hot reload, with the watcher and the scheduler running.
    let _watcher = tokio.block_on(async { policies::watch(&service) }).unwrap();
    let scheduler = tokio.spawn({
        let s = service.clone();
        async move { s.schedule().await }
    });
    let mut n = 0usize;
    let mut latencies = Vec::new();
    let mut group = c.benchmark_group("serve");
    group.sample_size(20);
    group.bench_function("hot reload: file written -> new policy decided", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let name = format!("new{n}");
                let text =
                    common::service::policy(0, "10s").replace("\"p0\"", &format!("\"{name}\""));
                let started = Instant::now();
                std::fs::write(dir.join(format!("policies/new{n}.scale")), text).unwrap();
                loop {
                    if service.slot(&name).is_some_and(|s| s.last().is_some()) {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "{name} never decided"
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
                let took = started.elapsed();
                latencies.push(took);
                total += took;
            }
            total
        });
    });
    group.finish();
    latencies.sort();
    if !latencies.is_empty() {
        eprintln!(
            "hot reload, file written -> first decision of the new policy ({} samples, {POLICIES} policies loaded): p50 {:.0} ms, max {:.0} ms (goal < 200 ms)",
            latencies.len(),
            latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
            latencies[latencies.len() - 1].as_secs_f64() * 1000.0
        );
    }
    service
        .stopping
        .store(true, std::sync::atomic::Ordering::Release);
    let _ = tokio.block_on(scheduler);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
