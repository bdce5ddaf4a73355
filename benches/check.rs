//! `cargo bench --bench check`: parse and check 1,000 policy files of four policies
//! each, as `policyctl check` does for a large repository. Goal: under 0.3 s for all
//! 1,000 on a 2-core machine.
//!
//! Then side by side, in one run: the `policyctl check` binary on those 1,000 files
//! against `promtool check rules` on 1,000 files of the 4 equivalent alerting rules
//! (the same PromQL, thresholds and `for`). Goal (issue 9): policyctl takes at most half
//! promtool's wall time. The bench fails when it does not.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use policyctl::check::{Options, Source, check};

// `common::service` builds its service with the tests' helper.
#[path = "../tests/support/mod.rs"]
mod support;

mod common;
use common::file;

fn bench(c: &mut Criterion) {
    let sources: Vec<Source> = (0..1000)
        .map(|n| Source {
            path: format!("p{n}.scale"),
            text: file(n),
        })
        .collect();
    let options = Options::at(
        Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0)
            .single()
            .unwrap_or_default(),
    );
    let checked = check(&sources, &options);
    assert_eq!(
        checked.policies.len(),
        4000,
        "{:?}",
        checked.diagnostics.first()
    );
    assert_eq!(checked.diagnostics.len(), 0);

    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    group.bench_function("1000 files x 4 policies", |b| {
        b.iter(|| check(black_box(&sources), &options))
    });
    group.bench_function("1 file x 4 policies", |b| {
        b.iter(|| check(black_box(&sources[..1]), &options))
    });
    group.finish();
}

/// The four policies of `file(n)` as Prometheus alerting rules.
fn rules(n: usize) -> String {
    format!(
        r#"groups:
  - name: g{n}
    rules:
      - alert: WebCpuHigh{n}
        expr: sum(rate(container_cpu_usage_seconds_total{{namespace="web", pod=~"web-{n}-.*"}}[2m])) / sum(kube_pod_container_resource_requests{{namespace="web", resource="cpu"}}) > 0.5
      - alert: WorkerBacklog{n}
        expr: sum(jobs_active{{queue="q{n}"}}) + sum(jobs_waiting{{queue="q{n}"}}) > 5
      - alert: DjangoInFlight{n}
        expr: sum(rate(django_http_requests_total{{app="d{n}"}}[2m])) * histogram_quantile(0.95, sum by (le) (rate(django_latency_seconds_bucket{{app="d{n}"}}[5m]))) > 32
      - alert: StandbyCpu{n}
        expr: 1 - avg(rate(node_cpu_seconds_total{{mode="idle", job="s{n}"}}[2m])) > 0.8
        for: 5m
"#
    )
}

fn run(command: &mut Command) -> Duration {
    let start = Instant::now();
    let output = command.output().expect("the command runs");
    let took = start.elapsed();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

fn versus_promtool(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("policyctl-bench-{}", std::process::id()));
    let (scale, yaml) = (dir.join("scale"), dir.join("rules"));
    std::fs::create_dir_all(&scale).unwrap();
    std::fs::create_dir_all(&yaml).unwrap();
    let mut rule_files = Vec::new();
    for n in 0..1000 {
        std::fs::write(scale.join(format!("p{n}.scale")), file(n)).unwrap();
        let path = yaml.join(format!("r{n}.yml"));
        std::fs::write(&path, rules(n)).unwrap();
        rule_files.push(path);
    }
    let policyctl = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_policyctl"));
        c.args(["check", "--deny-warnings", "--now", "2026-11-22T00:00:00Z"])
            .arg(&scale);
        c
    };
    let promtool = || {
        let mut c = Command::new("promtool");
        c.args(["check", "rules"]).args(&rule_files);
        c
    };
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool is not installed (Debian's `prometheus`): no side-by-side run");
        return;
    }

    let mut group = c.benchmark_group("check vs promtool");
    group.sample_size(10);
    group.bench_function("policyctl check, 1000 files x 4 policies", |b| {
        b.iter(|| run(&mut policyctl()))
    });
    group.bench_function("promtool check rules, 1000 files x 4 rules", |b| {
        b.iter(|| run(&mut promtool()))
    });
    group.finish();

    // The ratio, from interleaved runs so that both see the same machine.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        ours.push(run(&mut policyctl()));
        theirs.push(run(&mut promtool()));
    }
    ours.sort();
    theirs.sort();
    let (ours, theirs) = (ours[3], theirs[3]);
    let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
    println!(
        "check vs promtool: policyctl {:.0} ms, promtool {:.0} ms (medians of 7): {ratio:.2}x",
        ours.as_secs_f64() * 1e3,
        theirs.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        ratio <= 0.5,
        "policyctl check takes {ratio:.2}x promtool's wall time; the goal is at most 0.5x"
    );
}

criterion_group!(benches, bench, versus_promtool);
criterion_main!(benches);
