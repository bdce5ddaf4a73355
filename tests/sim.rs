//! `simulate`, `test` and `explain` as users run them: the behaviour files of
//! `tests/engine/` and `policies/`, trace errors, output formats, plots.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod support;

use support::{Run, scratch};

fn policyctl(args: &[&str]) -> Run {
    support::policyctl(support::root(), args)
}

fn counts(out: &str) -> (usize, usize) {
    let last = out.lines().last().unwrap_or_default();
    let mut words = last.split_whitespace();
    let passed = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let failed = words
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    (passed, failed)
}

#[test]
fn behaviour_policies_pass_check() {
    let run = policyctl(&[
        "check",
        "--deny-warnings",
        "--now",
        "2026-11-22T00:00:00Z",
        "tests/engine",
        "tests/sim",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
}

#[test]
fn every_behaviour_file_passes() {
    let run = policyctl(&["test", "tests/engine"]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    let (passed, failed) = counts(&run.out);
    assert_eq!(failed, 0, "{}", run.out);
    assert!(passed >= 48, "only {passed} engine cases ran:\n{}", run.out);
}

#[test]
fn every_shipped_policy_has_a_passing_test_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "scale") {
            let test = path.with_extension("scaletest.ron");
            assert!(
                test.exists(),
                "{} has no test file beside it",
                path.display()
            );
        }
    }
    let run = policyctl(&["test", "policies"]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert_eq!(counts(&run.out).1, 0, "{}", run.out);
}

#[test]
fn a_failing_expectation_says_what_happened_instead() {
    let run = policyctl(&["test", "tests/sim/failing.scaletest.ron"]);
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    assert!(
        run.out
            .contains("FAIL tests/sim/failing.scaletest.ron: expects the wrong count"),
        "{}",
        run.out
    );
    assert!(
        run.out.contains("at 0s (2026-03-02T09:00:00Z): expected 3 replicas, got 4: `track jobs per replica 5` proposes 4"),
        "{}",
        run.out
    );
    assert!(
        run.out
            .contains("expected the reason to mention `no such words`, it was:"),
        "{}",
        run.out
    );
    assert_eq!(counts(&run.out), (0, 1));
}

#[test]
fn a_test_file_that_does_not_parse_fails_clearly() {
    let dir = scratch("bad-ron");
    std::fs::write(
        dir.join("x.scaletest.ron"),
        "(policy_file: \"x.scale\", tests: [ (name: 3) ])",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = policyctl(&["test", dir.to_str().unwrap_or_default()]);
    assert_eq!(run.code, 1);
    assert!(run.out.contains("not a valid test file"), "{}", run.out);
}

const POLICY: &str = "policy \"web\" {\n  target k8s \"x\"\n  replicas 1..20\n  metric jobs = prometheus \"jobs\"\n  track jobs per replica 10\n  stabilize down 0s\n}\n";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.to_string_lossy().into_owned()
}

#[test]
fn bad_traces_name_the_row_and_column() {
    let dir = scratch("traces");
    let policy = write(&dir, "p.scale", POLICY);
    let cases = [
        (
            "time,jobs\n2026-03-02T09:00:00Z,1\nnoon,2\n",
            "row 3, column `time`: `noon` is not an RFC 3339 time",
        ),
        (
            "time,jobs\n2026-03-02T09:01:00Z,1\n2026-03-02T09:00:00Z,2\n",
            "row 3, column `time`: `2026-03-02T09:00:00Z` is not after the row before it",
        ),
        (
            "time,jobs\n2026-03-02T09:00:00Z,lots\n",
            "row 2, column `jobs`: `lots` is not a number",
        ),
        (
            "time,jobs,cpu\n2026-03-02T09:00:00Z,1,2\n",
            "row 1, column `cpu`: unknown column: policy `web` has no such metric (its metrics: jobs)",
        ),
        (
            "time,cpu\n2026-03-02T09:00:00Z,1\n",
            "row 1, column `cpu`: unknown column",
        ),
        (
            "time\n2026-03-02T09:00:00Z\n",
            "row 1: missing column `jobs`: policy `web` reads this metric",
        ),
    ];
    for (i, (trace, message)) in cases.iter().enumerate() {
        let trace = write(&dir, &format!("t{i}.csv"), trace);
        let run = policyctl(&["simulate", &policy, "--trace", &trace]);
        assert_eq!(run.code, 1, "{trace}: {}{}", run.out, run.err);
        assert!(
            run.err.contains(message),
            "{trace}: expected `{message}` in:\n{}",
            run.err
        );
    }
    let run = policyctl(&["simulate", &policy, "--trace", "/nonexistent/trace.csv"]);
    assert_eq!(run.code, 2, "an unreadable trace is an I/O error");
}

/// A fleet whose total load is 100 jobs: one replica sees 100, ten see 10 each.
fn closed_loop_trace(dir: &Path) -> String {
    let mut text = String::from("time,jobs\n");
    for minute in 0..10 {
        text.push_str(&format!("2026-03-02T09:{minute:02}:00Z,100\n"));
    }
    write(dir, "total.csv", &text)
}

#[test]
fn per_replica_closes_the_loop() {
    let dir = scratch("loop");
    // An average-value target: `--per-replica` turns the fleet's total into that average.
    let policy = write(
        &dir,
        "p.scale",
        &POLICY.replace("track jobs per replica 10", "track jobs at 10"),
    );
    let trace = closed_loop_trace(&dir);
    // Open loop: every replica seems to carry 100 jobs forever: the fleet runs to MAX.
    let open = policyctl(&["simulate", &policy, "--trace", &trace, "--format", "json"]);
    assert_eq!(open.code, 0, "{}", open.err);
    // Closed loop: the policy sees 100 / current; at 10 replicas the ratio is 1 and it holds.
    let closed = policyctl(&[
        "simulate",
        &policy,
        "--trace",
        &trace,
        "--per-replica",
        "jobs",
        "--format",
        "json",
    ]);
    assert_eq!(closed.code, 0, "{}", closed.err);
    let last_to = |out: &str| -> u64 {
        let line = out.lines().last().unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["to"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(last_to(&closed.out), 10, "{}", closed.out);
    assert!(
        closed.out.lines().count() <= 3,
        "the closed loop settles without flapping:\n{}",
        closed.out
    );
    assert_eq!(last_to(&open.out), 20, "{}", open.out);
}

#[test]
fn json_lines_and_all_ticks() {
    let dir = scratch("json");
    let policy = write(&dir, "p.scale", POLICY);
    let trace = write(
        &dir,
        "t.csv",
        "time,jobs\n2026-03-02T09:00:00Z,30\n2026-03-02T09:01:00Z,30\n",
    );
    let run = policyctl(&[
        "simulate",
        &policy,
        "--trace",
        &trace,
        "--format",
        "json",
        "--initial",
        "1",
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    let lines: Vec<serde_json::Value> = run
        .out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 1, "one decision: {}", run.out);
    assert_eq!(lines[0]["at"], "2026-03-02T09:00:00Z");
    assert_eq!(lines[0]["policy"], "web");
    assert_eq!(
        (lines[0]["from"].as_u64(), lines[0]["to"].as_u64()),
        (Some(1), Some(3))
    );
    assert!(
        lines[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("track jobs per replica 10"))
    );

    let run = policyctl(&[
        "simulate",
        &policy,
        "--trace",
        &trace,
        "--format",
        "json",
        "--initial",
        "1",
        "--all-ticks",
    ]);
    let lines: Vec<serde_json::Value> = run
        .out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        lines.len(),
        5,
        "a line per tick (every 15s over one minute): {}",
        run.out
    );
    assert!(
        lines[1..].iter().all(|l| l["from"] == l["to"]),
        "holds have to == from"
    );
}

#[test]
fn human_output_ends_with_a_summary() {
    let run = policyctl(&[
        "simulate",
        "policies/membrane-api.scale",
        "--trace",
        "examples/traces/membrane-api.csv",
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    let summary = run.out.lines().last().unwrap_or_default();
    assert!(
        summary.contains("ticks,") && summary.contains("decisions"),
        "{summary}"
    );
}

#[test]
fn the_plot_has_a_panel_per_metric_targets_missing_data_and_named_schedules() {
    let dir = scratch("plot");
    let svg = dir.join("plot.svg");
    let run = policyctl(&[
        "simulate",
        "policies/app-server.scale",
        "--trace",
        "examples/traces/app-server.csv",
        "--plot",
        svg.to_str().unwrap_or_default(),
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    let text = std::fs::read_to_string(&svg).unwrap_or_default();
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(200)]);
    for label in [
        "replicas  (bounds 1..2)",
        "recommendation",
        // The schedule is named, in the legend and on its span.
        "schedule business-hours",
        "\nbusiness-hours\n",
        "cpu  (prometheus",
        "memory  (prometheus",
        "missing",
        // Wall-clock time, not hours since the start.
        "\n10:00\n",
        "time (UTC)",
    ] {
        assert!(text.contains(label), "the plot has no `{label}`");
    }
    assert!(!text.contains("0.1h"), "hours since the start are gone");
    // A `track` rule's target is drawn on its metric's panel.
    let run = policyctl(&[
        "simulate",
        "policies/membrane-api.scale",
        "--trace",
        "examples/traces/membrane-api.csv",
        "--plot",
        svg.to_str().unwrap_or_default(),
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    let text = std::fs::read_to_string(&svg).unwrap_or_default();
    assert!(text.contains("target 0.5"), "no target line");
}

#[test]
fn explain_prints_every_rule_and_step() {
    let run = policyctl(&[
        "explain",
        "policies/membrane-api.scale",
        "--trace",
        "examples/traces/membrane-api.csv",
        "--at",
        "2026-03-02T12:00:00Z",
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    for part in [
        "policy membrane-api at 2026-03-02T12:00:00Z",
        "rule `track cpu at 50%`",
        "recommendation:",
        "missing data:",
        "bounds:",
        "stabilisation:",
        "schedules:",
        "rate limits:",
        "cooldown:",
        "decision:",
    ] {
        assert!(run.out.contains(part), "no `{part}` in:\n{}", run.out);
    }
    let early = policyctl(&[
        "explain",
        "policies/membrane-api.scale",
        "--trace",
        "examples/traces/membrane-api.csv",
        "--at",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(early.code, 1);
    assert!(early.err.contains("no tick at or before"), "{}", early.err);
}

#[test]
fn several_policies_need_a_choice() {
    let run = policyctl(&[
        "simulate",
        "tests/engine/rules.scale",
        "--trace",
        "examples/traces/membrane-api.csv",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.err.contains("holds several policies"), "{}", run.err);
}
