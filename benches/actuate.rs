//! `cargo bench --bench actuate`: a fresh, isolated instance of a trivial plugin, one
//! `apply`, and the instance dropped, as every decision runs.
//! Goals: p50 ≤ 40 µs per call; ≥ 15,000 isolated calls/s on 2 threads.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use policyctl::actuate::{ActuatorConfig, Request, Runtime};

#[path = "../tests/support/mod.rs"]
mod support;

fn bench(c: &mut Criterion) {
    let runtime = Runtime::new(None).unwrap_or_else(|e| panic!("{e}"));
    let config = ActuatorConfig::new(
        "trivial",
        support::plugins().1.join("policyctl_trivial.wasm"),
    );
    let actuator = runtime
        .load(&config, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let request = |i: u64| Request {
        id: format!("d{i}"),
        policy: "p".into(),
        target: format!("t{i}"),
        from: 1,
        to: 2,
        reason: String::new(),
        dry_run: false,
    };

    let mut group = c.benchmark_group("actuate");
    group.bench_function("fresh instance + apply + drop", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            tokio
                .block_on(actuator.apply(&request(i)))
                .0
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.finish();

    // Latency percentiles of single calls, and throughput with 8 tasks on 2 threads.
    let mut samples: Vec<Duration> = (0..5000u64)
        .map(|i| {
            let started = Instant::now();
            let _ = tokio.block_on(actuator.apply(&request(i)));
            started.elapsed()
        })
        .collect();
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "actuate/single call: p50 {:?}, p99 {:?}",
        pick(0.5),
        pick(0.99)
    );

    let calls = 40_000u64;
    let started = Instant::now();
    tokio.block_on(async {
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let a = actuator.clone();
                tokio::spawn(async move {
                    for i in 0..calls / 8 {
                        let r = Request {
                            id: format!("{t}-{i}"),
                            policy: "p".into(),
                            target: format!("{t}-{i}"),
                            from: 1,
                            to: 2,
                            reason: String::new(),
                            dry_run: false,
                        };
                        let _ = a.apply(&r).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    println!("actuate/throughput: {rate:.0} isolated calls/s (8 tasks, 2 threads)");
}

criterion_group!(benches, bench);
criterion_main!(benches);
