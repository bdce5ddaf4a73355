//! The attacks that broke the "safe" promise, each replayed against the real binary:
//! hostile files for the CLI, and for `serve` a hostile Prometheus, a state directory
//! that stops accepting writes, idle and flooding HTTP clients, files that are not
//! files, unreadable folders, and configurations that `check --config` must judge as
//! `serve` does. (Sandbox attacks live in tests/actuate.rs and tests/descriptors.rs;
//! parser attacks in tests/parse_work.rs.)

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    Serve, free_port, per_second_trace, policyctl, record_config, scratch, wait_until, write,
};

const POLICY: &str =
    "policy \"web\" {\n  target audit \"web\"\n  replicas 1..5\n  every 1s\n  desired = 2\n}\n";

/// Run `policyctl` with `input` on its standard input, at most `secs` seconds: a run
/// that hangs fails the test instead of hanging it.
fn bounded(dir: &Path, args: &[&str], input: Option<&[u8]>, secs: u64) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run policyctl: {e}"));
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut out = String::new();
            let mut err = String::new();
            let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
            let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
            return (status.code().unwrap_or(-1), out, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "`policyctl {}` did not finish within {secs} s",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "mkfifo {}",
        path.display()
    );
}

// ------------------------------------------------------------------ the CLI

#[test]
fn fmt_refuses_standard_input_over_its_limit_instead_of_truncating_it() {
    let dir = scratch("fmt-big-stdin");
    let mut text = String::from(POLICY);
    while text.len() <= 1 << 20 {
        text.push_str("# a comment line that makes the input long\n");
    }
    let (code, out, err) = bounded(&dir, &["fmt", "-"], Some(text.as_bytes()), 60);
    assert_eq!(code, 2, "{err}");
    assert!(
        out.is_empty(),
        "nothing is printed: {} bytes were",
        out.len()
    );
    assert!(err.contains("1 MiB"), "{err}");
}

#[test]
fn fmt_writes_through_a_symbolic_link() {
    let dir = scratch("fmt-symlink");
    let real = dir.join("real/web.scale");
    write(&real, &POLICY.replace("  every 1s", "every   1s"));
    let link = dir.join("web.scale");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let run = policyctl(&dir, &["fmt", "web.scale"]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), POLICY);
}

#[test]
fn files_that_are_not_regular_files_are_refused_without_reading() {
    let dir = scratch("not-files");
    write(&dir.join("good.scale"), POLICY);
    mkfifo(&dir.join("fifo.scale"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.scale")).unwrap();
    let (code, out, err) = bounded(&dir, &["check", "."], None, 60);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("fifo.scale") && err.contains("a FIFO"),
        "{err}"
    );
    assert!(
        err.contains("zero.scale") && err.contains("a character device"),
        "{err}"
    );
    // fmt, and a trace that is a FIFO, likewise.
    let (code, _, err) = bounded(&dir, &["fmt", "--check", "fifo.scale"], None, 60);
    assert_eq!(code, 2, "{err}");
    mkfifo(&dir.join("trace.csv"));
    let (code, _, err) = bounded(
        &dir,
        &["simulate", "good.scale", "--trace", "trace.csv"],
        None,
        60,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a FIFO"), "{err}");
}

#[test]
fn huge_durations_are_clear_errors_not_panics() {
    let dir = scratch("big-durations");
    write(
        &dir.join("p.scale"),
        "policy \"p\" {\n  target audit \"p\"\n  replicas 1..5\n  metric q = prometheus \"q\"\n  desired = q\n}\n",
    );
    write(
        &dir.join("p.scaletest.ron"),
        r#"(policy_file: "p.scale", tests: [
            (name: "big", start: "2026-03-01T10:00:00Z", interval: "100000000d", series: { "q": "1x3" },
             expect: [(at: "100000000d", replicas: 1)]),
        ])"#,
    );
    let (code, out, err) = bounded(&dir, &["test", "p.scaletest.ron"], None, 60);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("100 years"), "{out}");
    let (code, _, err) = bounded(
        &dir,
        &[
            "simulate",
            "p.scale",
            "--prometheus",
            "http://127.0.0.1:9",
            "--since",
            "100000000d",
        ],
        None,
        60,
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("100 years"), "{err}");
}

#[test]
fn traces_with_rows_centuries_apart_are_refused_not_walked_tick_by_tick() {
    let dir = scratch("time-gaps");
    write(
        &dir.join("p.scale"),
        "policy \"p\" {\n  target audit \"p\"\n  replicas 1..5\n  every 1s\n  metric q = prometheus \"q\"\n  desired = q\n}\n",
    );
    write(
        &dir.join("t.csv"),
        "time,q\n2026-01-01T00:00:00Z,1\n2626-01-01T00:00:00Z,2\n",
    );
    for args in [
        vec!["simulate", "p.scale", "--trace", "t.csv"],
        vec![
            "explain",
            "p.scale",
            "--trace",
            "t.csv",
            "--at",
            "2626-01-01T00:00:00Z",
        ],
    ] {
        let (code, _, err) = bounded(&dir, &args, None, 60);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("ticks") && err.contains("--until"), "{err}");
    }
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let dir = scratch("bom");
    write(&dir.join("p.scale"), &format!("\u{feff}{POLICY}"));
    let run = policyctl(&dir, &["check", "--deny-warnings", "p.scale"]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
}

// ------------------------------------------------------------------ serve

/// A service configuration with the `record` actuator `audit` (decisions appended to
/// `out/d.jsonl`), the policies of `policies/`, and `sources` and `extra` fields.
fn recorded(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("out/d.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// A line of `/proc/PID/status`, in kB.
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_prometheus_that_streams_without_end_costs_a_missing_sample_not_memory() {
    let dir = scratch("hostile-prometheus");
    // Answers every query with the start of a vector, then streams series forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let prom_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[");
                let chunk = "{\"metric\":{},\"value\":[1,\"1\"]},".repeat(2048);
                // At most 4 GB, or until the reader hangs up.
                for _ in 0..70_000 {
                    if stream.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let port = free_port();
    write(
        &dir.join("policies/q.scale"),
        "policy \"q\" {\n  target audit \"q\"\n  replicas 1..5\n  every 1s\n  metric q = prometheus \"q\"\n  desired = q\n}\n",
    );
    let path = record_config(
        &dir,
        port,
        &format!(
            r#"(name: "prometheus", kind: Prometheus(url: "http://127.0.0.1:{prom_port}", timeout_ms: 20000))"#
        ),
        "",
    );
    let serve = Serve::start(&path, port);
    let reason = || {
        serve.policy("q")["last"]["missing"]["q"]
            .as_str()
            .map(str::to_string)
    };
    assert!(
        wait_until(30, || reason()
            .is_some_and(|r| r.contains("max_response_bytes"))),
        "{:?}\n{}",
        reason(),
        serve.logs()
    );
    let rss = status_kib(serve.child.id(), "VmHWM:");
    assert!(rss < 400 * 1024, "serve peaked at {rss} KiB");
}

#[test]
fn a_decision_that_cannot_be_written_down_is_not_applied() {
    let dir = scratch("state-unwritable");
    // The load rises to 3 after 4 s: one decision, 1 -> 3.
    let trace = per_second_trace("q", 600, |i| if i < 4 { "1" } else { "3" }.to_string());
    write(&dir.join("load.csv"), &trace);
    write(
        &dir.join("policies/q.scale"),
        "policy \"q\" {\n  target audit \"q\"\n  replicas 1..5\n  every 1s\n  metric q = load \"q\"\n  desired = q\n}\n",
    );
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let port = free_port();
    let path = record_config(
        &dir,
        port,
        r#"(name: "load", kind: File(path: "load.csv"))"#,
        r#"state_file: "state/state.json","#,
    );
    let serve = Serve::start(&path, port);
    // The state folder becomes a file: every write fails (as on a full or read-only
    // disk, but also for root).
    std::fs::remove_dir_all(dir.join("state")).unwrap();
    write(&dir.join("state"), "not a folder");
    assert!(
        wait_until(20, || serve.policy("q")["last"]["applied"]["status"]
            .as_str()
            .is_some_and(|a| a == "not_applied")),
        "{}",
        serve.logs()
    );
    assert_eq!(
        recorded(&dir),
        0,
        "a decision reached the actuator without reaching the disk"
    );
    let (status, body) = serve.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("state file"), "{body}");
    assert!(
        serve.logs().contains("the state file cannot be written"),
        "{}",
        serve.logs()
    );
    // Writable again: the decision goes through, and the service is ready.
    std::fs::remove_file(dir.join("state")).unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    assert!(wait_until(20, || recorded(&dir) == 1), "{}", serve.logs());
    assert!(wait_until(10, || serve.get("/readyz").0 == 200));
}

#[test]
fn idle_connections_and_request_floods_never_hold_up_the_service() {
    let dir = scratch("http-flood");
    let mut policies = String::new();
    for i in 0..100 {
        policies.push_str(&format!(
            "policy \"p{i}\" {{\n  target audit \"p{i}\"\n  replicas 1..5\n  every 1s\n  desired = 1\n}}\n"
        ));
    }
    write(&dir.join("policies/all.scale"), &policies);
    let port = free_port();
    let path = record_config(&dir, port, "", "");
    let serve = Serve::start(&path, port);
    let pid = serve.child.id();
    let before = open_descriptors(pid);

    // 600 connections that never send a request.
    let idle: Vec<std::net::TcpStream> = (0..600)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let held = open_descriptors(pid);
    assert!(
        held < before + 300,
        "{} idle connections made serve hold {held} descriptors (from {before})",
        idle.len()
    );
    // They are dropped after the header timeout, and the API answers again.
    assert!(
        wait_until(45, || serve.get("/readyz").0 == 200),
        "the API never came back"
    );
    drop(idle);

    // Two clients asking for every policy as fast as they can, for 6 s.
    let (_, metrics) = serve.get("/metrics");
    let skipped_before = skipped(&metrics);
    let stop = Instant::now() + Duration::from_secs(6);
    let clients: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut answered = 0;
                while Instant::now() < stop {
                    if support::http("GET", port, "/v1/policies", &[], "").0 == 200 {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap_or(0)).sum();
    let (_, metrics) = serve.get("/metrics");
    let skipped_during = skipped(&metrics) - skipped_before;
    assert!(answered > 10, "only {answered} answers");
    // 100 policies × 6 ticks: deciding on time comes first.
    assert!(
        skipped_during <= 10.0,
        "{skipped_during} ticks skipped under API load"
    );
}

fn skipped(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("policyctl_ticks_skipped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn serve_survives_fifos_devices_and_unreadable_folders_among_its_policies() {
    let dir = scratch("serve-not-files");
    write(&dir.join("policies/web.scale"), POLICY);
    write(
        &dir.join("policies/team/api.scale"),
        &POLICY.replace("web", "api"),
    );
    mkfifo(&dir.join("policies/fifo.scale"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("policies/zero.scale")).unwrap();
    let port = free_port();
    let path = record_config(&dir, port, "", "");
    // Root reads any folder: drop the capabilities that let it, so that a folder
    // without permissions is unreadable for this service as for any other user.
    // SAFETY: geteuid has no preconditions.
    let mut child = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set=-dac_override,-dac_read_search", "--"]);
        c.arg(env!("CARGO_BIN_EXE_policyctl"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_policyctl"))
    };
    let log = dir.join("serve.log");
    let mut serve = child
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let policy = |name: &str| {
        let (_, body) = support::http("GET", port, &format!("/v1/policies/{name}"), &[], "");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()
    };
    let ok = wait_until(60, || {
        policy("web")["name"] == "web" && policy("api")["name"] == "api"
    });
    if !ok {
        let _ = serve.kill();
        panic!(
            "serve did not load its good policies beside a FIFO and /dev/zero:\n{}",
            logs()
        );
    }
    let (_, files) = support::http("GET", port, "/v1/files", &[], "");
    assert!(
        files.contains("a FIFO") && files.contains("a character device"),
        "{files}"
    );

    // The team folder becomes unreadable, and a reload happens: `api` stays.
    let team = dir.join("policies/team");
    std::fs::set_permissions(&team, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    write(
        &dir.join("policies/web.scale"),
        &POLICY.replace("1..5", "1..6"),
    );
    let reloaded = wait_until(20, || policy("web")["replicas"].to_string().contains('6'));
    let (_, files) = support::http("GET", port, "/v1/files", &[], "");
    let api = policy("api");
    std::fs::set_permissions(&team, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(reloaded, "{}", logs());
    assert_eq!(
        api["name"],
        "api",
        "the unreadable folder's policy was unloaded: {api}\n{}",
        logs()
    );
    assert!(files.contains("cannot be read"), "{files}");
}

#[test]
fn check_config_refuses_what_serve_refuses() {
    let dir = scratch("check-config-like-serve");
    write(&dir.join("policies/web.scale"), POLICY);
    write(&dir.join("load.csv"), "time,q\n2026-01-01T00:00:00Z,1\n");
    let port = free_port();
    let cases = [
        (
            "a header name with a space",
            r#"(name: "prometheus", kind: Prometheus(url: "http://127.0.0.1:9", headers: { "bad header": "x" }))"#,
            "",
        ),
        (
            "a token file that is a folder",
            r#"(name: "prometheus", kind: Prometheus(url: "http://127.0.0.1:9", bearer_token_file: "policies"))"#,
            "",
        ),
        (
            "a state file in a folder that does not exist",
            "",
            r#"state_file: "nowhere/state.json","#,
        ),
        (
            "a zero query timeout",
            r#"(name: "prometheus", kind: Prometheus(url: "http://127.0.0.1:9", timeout_ms: 0))"#,
            "",
        ),
    ];
    for (what, sources, extra) in cases {
        let path = record_config(&dir, port, sources, extra);
        let check = policyctl(&dir, &["check", "--config", "serve.ron"]);
        assert_eq!(
            check.code, 1,
            "check --config passed {what}:\n{}{}",
            check.out, check.err
        );
        assert!(
            check.out.contains("scale::config-invalid"),
            "{what}: {}",
            check.out
        );
        let (code, _, err) = bounded(
            &dir,
            &["serve", "--config", path.to_str().unwrap()],
            None,
            60,
        );
        assert_eq!(code, 2, "serve accepted {what}: {err}");
    }
}

// ------------------------------------------------------------------ found on the way (issue 9)

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let dir = scratch("closed-pipe");
    let root = support::root();
    // `simulate` prints a line per decision; `head -1` closes the pipe after one.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' simulate policies/instant-tasks-worker.scale --trace examples/traces/instant-tasks-worker.csv --all-ticks 2>'{}' | head -1",
            env!("CARGO_BIN_EXE_policyctl"),
            dir.join("err").display()
        ))
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let err = std::fs::read_to_string(dir.join("err")).unwrap_or_default();
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn compare_takes_the_policy_of_the_same_name_or_the_files_only_one() {
    let dir = scratch("compare-names");
    write(
        &dir.join("a.scale"),
        "policy \"x\" {\n  target audit \"x\"\n  replicas 1..5\n  metric q = prometheus \"q\"\n  desired = q\n}\n",
    );
    write(
        &dir.join("b.scale"),
        "policy \"y\" {\n  target audit \"y\"\n  replicas 1..5\n  metric q = prometheus \"q\"\n  desired = q + 1\n}\n",
    );
    write(
        &dir.join("t.csv"),
        "time,q\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,3\n",
    );
    let run = policyctl(
        &dir,
        &[
            "simulate",
            "a.scale",
            "--trace",
            "t.csv",
            "--compare",
            "b.scale",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert!(run.out.contains("b.scale"), "{}", run.out);
}

#[test]
fn the_release_profile_ships_no_debug_info() {
    // `cargo build --release` made a 272 MB binary (36 MB stripped) with debug = 1.
    let manifest = std::fs::read_to_string(support::root().join("Cargo.toml")).unwrap();
    let release = manifest
        .split("[profile.release]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or_default();
    assert!(release.contains("debug = false"), "{release}");
    assert!(release.contains("strip = \"debuginfo\""), "{release}");
}
