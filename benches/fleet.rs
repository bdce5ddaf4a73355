//! `cargo bench --bench fleet`: one instance with the file store and a large fleet,
//! `POLICYCTL_BENCH_FLEET` policies (100,000 by default) at `every 15s`, on the machine's
//! cores, with the real scheduler and clock for `POLICYCTL_BENCH_ROUNDS` rounds (3).
//! Reported: load time, how late each policy's ticks start after their aligned due time
//! (every tick on time: all within the `every`), ticks skipped because the last was
//! still running, and resident memory (goal: under 400 MB).

// Benchmark code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use policyctl::serve::{Service, config, policies};

#[path = "../tests/support/mod.rs"]
mod support;

const PER_FILE: usize = 100;
const EVERY_MS: i64 = 15_000;

fn policy(i: usize) -> String {
    // The three shapes of benches/serve.rs.
    let rules = match i % 3 {
        0 => "  track q per replica 5\n".to_string(),
        1 => "  when q > 100 for 2m scale up by 1\n  when q < 10 for 5m scale down by 1\n".to_string(),
        _ => "  let each = q / max(current, 1)\n  desired = ceil(each / 4) + 2\n  limit up 50% per 1m\n".to_string(),
    };
    format!(
        "policy \"p{i}\" {{\n  target audit \"t{i}\"\n  replicas 2..40\n  every 15s\n  metric q = load \"q\"\n{rules}}}\n"
    )
}

fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

fn mib(field: &str) -> f64 {
    status_kib(field) / 1024.0
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
    let mut trace = String::from("time,q\n");
    for i in 0..3600 {
        trace.push_str(&format!(
            "2026-01-01T{:02}:{:02}:{:02}Z,{}\n",
            i / 3600,
            (i / 60) % 60,
            i % 60,
            20 + (i % 7) * 3
        ));
    }
    std::fs::write(dir.join("load.csv"), trace).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    for f in 0..count.div_ceil(PER_FILE) {
        let text: String = (f * PER_FILE..((f + 1) * PER_FILE).min(count))
            .map(policy)
            .collect();
        std::fs::write(dir.join(format!("policies/f{f:04}.scale")), text).unwrap();
    }
    let wasm = support::plugins().0.join("policyctl_record.wasm");
    let text = format!(
        r#"(
    sources: [(name: "load", kind: File(path: "load.csv", loop: true))],
    actuators: [(name: "audit", plugin: "{}", settings: {{ "path": "/out/d.jsonl" }}, files: [(host: "out", guest: "/out", write: true)])],
    policies: ["policies"],
    listen: "127.0.0.1:0",
    dry_run: true,
)"#,
        wasm.display()
    );
    let loaded = config::Loaded {
        config: config::parse(&text, 0).unwrap_or_else(|d| panic!("{}", d.message)),
        text,
        base: dir.to_path_buf(),
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = mib("VmRSS:");
    let service = Service::new(loaded).unwrap_or_else(|e| panic!("{e}"));
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
    while ran.elapsed() < deadline
        && slots.iter().any(|s| s.history_len() < rounds + 1)
    {
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
    let peak = mib("VmHWM:");
    let skipped = skipped_now() - skipped_at_start;
    service
        .stopping
        .store(true, std::sync::atomic::Ordering::Release);
    let _ = tokio.block_on(scheduler);
    writer.abort();

    let pct = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    println!("fleet: {count} policies at every 15s, one instance, file store, {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("  loaded and checked in {load_s:.1} s; resident {after_load:.0} MiB after loading ({before:.0} MiB before)");
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
    println!("  resident memory: {rss:.0} MiB now, peak {peak:.0} MiB (goal under 400 MB = 381 MiB)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ticked > rounds, "not every policy ticked {} times", rounds + 1);
    assert!(skipped == 0.0, "{skipped} ticks were skipped");
    assert!(
        late.last().copied().unwrap_or(0) < EVERY_MS / 3,
        "a tick started more than a third of its `every` late"
    );
    assert!(rss < 381.0, "resident memory {rss:.0} MiB is above 400 MB");
}
