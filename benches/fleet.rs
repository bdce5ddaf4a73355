//! `cargo bench --bench fleet`: one instance with the file store and a large fleet,
//! `POLICYCTL_BENCH_FLEET` policies (100,000 by default) at `every 15s`, on the machine's
//! cores, with the real scheduler and clock for `POLICYCTL_BENCH_ROUNDS` rounds (3).
//! Reported: load time, how late each policy's ticks start after their aligned due time
//! (every tick on time: all within the `every`), ticks skipped because the last was
//! still running, and resident memory (goal: under 400 MB).

// Benchmark code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use policyctl::serve::policies;

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

const EVERY_MS: i64 = 15_000;

fn mib(field: &str) -> f64 {
    common::service::resident_mib(field)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count: usize = std::env::var("POLICYCTL_BENCH_FLEET")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let rounds: usize = std::env::var("POLICYCTL_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let dir = support::scratch("bench-fleet");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = mib("VmRSS:");
    let service = common::service::service(
        &dir,
        count,
        "15s",
        &support::plugins().0.join("policyctl_record.wasm"),
    );
    let started = Instant::now();
    tokio.block_on(policies::reload(&service));
    let slots = service.all_slots();
    assert_eq!(slots.len(), count);
    let load_s = started.elapsed().as_secs_f64();
    let after_load = mib("VmRSS:");

    // The real scheduler, the real clock, and the state writer.
    let scheduler = tokio.spawn({
        let s = service.clone();
        async move { s.schedule().await }
    });
    let writer = tokio.spawn({
        let s = service.clone();
        async move { s.write_state().await }
    });
    let skipped_now = || -> f64 {
        service
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("policyctl_ticks_skipped_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let ran = Instant::now();
    let deadline = Duration::from_millis((EVERY_MS as u64) * (rounds as u64 + 3));
    // The first tick of every policy comes at once when it is loaded, off the grid;
    // when that burst is still running at the first aligned due time, those ticks are
    // skipped once. Skips are counted from the first aligned round on.
    while ran.elapsed() < deadline && slots.iter().any(|s| s.history_len() < 2) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let skipped_at_start = skipped_now();
    while ran.elapsed() < deadline && slots.iter().any(|s| s.history_len() < rounds + 1) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let ticked = slots.iter().map(|s| s.history_len()).min().unwrap_or(0);
    // How late each policy's last tick started after its aligned due time.
    let mut late: Vec<i64> = slots
        .iter()
        .filter_map(|s| s.last())
        .map(|t| t.at.timestamp_millis().rem_euclid(EVERY_MS))
        .collect();
    late.sort();
    let rss = mib("VmRSS:");
    let errors: Vec<String> = slots
        .iter()
        .filter_map(|s| s.last()?.error.clone())
        .collect();
    let peak = mib("VmHWM:");
    let skipped = skipped_now() - skipped_at_start;
    service
        .stopping
        .store(true, std::sync::atomic::Ordering::Release);
    let _ = tokio.block_on(scheduler);
    writer.abort();

    let pct = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    println!(
        "fleet: {count} policies at every 15s, one instance, file store, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  loaded and checked in {load_s:.1} s; resident {after_load:.0} MiB after loading ({before:.0} MiB before)"
    );
    println!(
        "  {ticked} ticks or more per policy in {:.0} s; ticks skipped (the last still running): {skipped} after the first round ({skipped_at_start} of the first ticks, at loading)",
        ran.elapsed().as_secs_f64()
    );
    println!(
        "  tick start after its due time: median {} ms, p99 {} ms, worst {} ms (on time: under {} ms)",
        pct(0.5),
        pct(0.99),
        late.last().copied().unwrap_or(0),
        EVERY_MS
    );
    println!(
        "  resident memory: {rss:.0} MiB now, peak {peak:.0} MiB (goal under 400 MB = 381 MiB)"
    );
    println!(
        "  last ticks that could not decide: {} of {count}{}",
        errors.len(),
        errors
            .first()
            .map(|e| format!(" (e.g. {e})"))
            .unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        ticked > rounds,
        "not every policy ticked {} times",
        rounds + 1
    );
    assert!(skipped == 0.0, "{skipped} ticks were skipped");
    assert!(
        late.last().copied().unwrap_or(0) < EVERY_MS / 3,
        "a tick started more than a third of its `every` late"
    );
    assert!(rss < 381.0, "resident memory {rss:.0} MiB is above 400 MB");
}
