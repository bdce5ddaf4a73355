//! `policyctl serve` end to end: a real Prometheus (Debian's package) scraping an
//! exporter this test serves, the real `webhook` and `record` plugins built from
//! `plugins/`, real HTTP receivers, and the faults operators meet: Prometheus down, a
//! policy file broken on disk, SIGKILL at random moments, overrides without the token.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    Prometheus, Received, Reply, Serve, Server, backfilled, free_port, http, per_second_trace,
    plugins, scratch, wait_until, write,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A webhook receiver that applies what it is told and reports it on observe.
struct Receiver {
    server: Server,
    replicas: Arc<AtomicU32>,
}

impl Receiver {
    fn start(rt: &tokio::runtime::Runtime, initial: u32) -> Receiver {
        let replicas = Arc::new(AtomicU32::new(initial));
        let r = replicas.clone();
        let server = rt.block_on(Server::start(move |req: &Received| {
            if req.method == "POST" {
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                if let Some(to) = body["to"].as_u64() {
                    r.store(to as u32, Ordering::SeqCst);
                }
                Reply::json(200, "{}")
            } else {
                Reply::json(
                    200,
                    format!(
                        "{{\"replicas\": {}, \"ready\": true}}",
                        r.load(Ordering::SeqCst)
                    ),
                )
            }
        }));
        Receiver { server, replicas }
    }

    /// The decisions POSTed so far: (arrival, body).
    fn decisions(&self) -> Vec<Value> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    fn actuator(&self, wasm: &Path) -> String {
        format!(
            r#"(
            name: "hooks",
            plugin: "{}",
            settings: {{
                "url": "http://127.0.0.1:{port}/scale",
                "observe_url": "http://127.0.0.1:{port}/state/{{target}}",
            }},
            allow_http: ["http://127.0.0.1:{port}"],
        )"#,
            wasm.join("policyctl_webhook.wasm").display(),
            port = self.server.port
        )
    }
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[test]
fn a_policy_scales_through_the_webhook_on_a_sustained_threshold_and_rides_out_prometheus_going_down()
 {
    let (wasm, _) = plugins();
    let rt = runtime();
    let dir = scratch("serve-prom");
    let value = Arc::new(AtomicU64::new(50));
    let v = value.clone();
    let exporter = rt.block_on(Server::start(move |_req: &Received| Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/plain; version=0.0.4".into())],
        body: format!(
            "# TYPE queue_depth gauge\nqueue_depth {}\n",
            v.load(Ordering::SeqCst)
        ),
    }));
    let prom_dir = dir.join("prom");
    let _ = std::fs::create_dir_all(&prom_dir);
    let mut prometheus = Prometheus::start(&prom_dir, Some(exporter.port));
    let receiver = Receiver::start(&rt, 1);
    let port = free_port();
    write(
        &dir.join("policies/queue.scale"),
        r#"policy "queue" {
  target hooks "queue-worker"
  replicas 1..5
  every 1s
  metric q = prometheus "max(queue_depth)"
  when q > 100 for 3s scale to 3
  when q < 10 for 2s scale to 1
  stabilize down 0s
}
"#,
    );
    write(
        &dir.join("policies/odd.scale"),
        r##"policy "odd" {
  target hooks "odd"
  replicas 1..5
  every 1s
  metric none = prometheus "no_such_metric"
  metric many = prometheus r#"queue_depth or label_replace(queue_depth, "copy", "yes", "", "")"#
  metric nan = prometheus "(max(queue_depth) - max(queue_depth)) / 0"
  metric broken = prometheus r#"vector(1) * on() (queue_depth or label_replace(queue_depth, "copy", "yes", "", ""))"#
  desired = none + many + nan + broken
}
"##,
    );
    write(
        &dir.join("serve.ron"),
        &format!(
            r#"(
    sources: [(name: "prometheus", kind: Prometheus(url: "{}", timeout_ms: 1000))],
    actuators: [{}],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
    state_file: "state.json",
)"#,
            prometheus.url(),
            receiver.actuator(&wasm)
        ),
    );
    let serve = Serve::start(&dir.join("serve.ron"), port);

    // Queries that give no single number are missing samples, each with its reason.
    assert!(
        // (once Prometheus has scraped the exporter)
        wait_until(20, || serve.policy("odd")["last"]["missing"]["many"]
            .as_str()
            .is_some_and(|r| r.contains("2 series"))),
        "{}",
        serve.logs()
    );
    let missing = serve.policy("odd")["last"]["missing"].clone();
    assert!(
        missing["none"]
            .as_str()
            .is_some_and(|r| r.contains("no series")),
        "{missing}"
    );
    assert!(
        missing["many"]
            .as_str()
            .is_some_and(|r| r.contains("2 series")),
        "{missing}"
    );
    assert!(
        missing["nan"].as_str().is_some_and(|r| r.contains("NaN")),
        "{missing}"
    );
    assert!(
        missing["broken"]
            .as_str()
            .is_some_and(|r| r.contains("failed")),
        "{missing}"
    );

    // Below the threshold: no decision.
    assert!(
        wait_until(20, || serve.policy("queue")["last"]["samples"]["q"] == 50.0),
        "{}",
        serve.logs()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        receiver.decisions().is_empty(),
        "{:?}",
        receiver.decisions()
    );

    // Crossing it: one decision, not before the window of 3 s has passed.
    let crossed = Instant::now();
    value.store(500, Ordering::SeqCst);
    assert!(
        wait_until(30, || !receiver.decisions().is_empty()),
        "no decision:\n{}",
        serve.logs()
    );
    let waited = crossed.elapsed();
    assert!(
        waited >= Duration::from_secs(3),
        "decided after {waited:?}, inside the 3s window"
    );
    let first = &receiver.decisions()[0];
    assert_eq!(
        (first["from"].as_u64(), first["to"].as_u64()),
        (Some(1), Some(3)),
        "{first}"
    );
    assert_eq!(receiver.replicas.load(Ordering::SeqCst), 3);

    // A query Prometheus rejects (`broken`) is that query's problem, not an outage.
    let count = |what: &str| {
        serve
            .logs()
            .lines()
            .filter(|l| l.contains(what) && l.contains(r#""source":"prometheus""#))
            .count()
    };
    assert_eq!(count("source down"), 0, "{}", serve.logs());

    // Prometheus goes down while the value would call for a scale-down: nothing moves.
    prometheus.stop();
    value.store(0, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(receiver.decisions().len(), 1, "{:?}", receiver.decisions());
    let view = serve.policy("queue");
    assert!(
        view["last"]["missing"]["q"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{view}"
    );
    let (_, metrics) = serve.get("/metrics");
    assert!(
        metric(
            &metrics,
            "policyctl_metric_fetch_errors_total{source=\"prometheus\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "policyctl_missing_samples_total") >= 2.0,
        "{metrics}"
    );
    assert_eq!(serve.get("/healthz").0, 200);

    // It comes back: the scale-down happens, after its own window.
    prometheus.resume();
    assert!(
        wait_until(40, || receiver.decisions().len() == 2),
        "no decision after Prometheus came back:\n{}",
        serve.logs()
    );
    // The outage was logged once when it began and once when it ended, not per tick.
    assert_eq!(count("source down"), 1, "{}", serve.logs());
    assert_eq!(count("source is back"), 1, "{}", serve.logs());
    let second = &receiver.decisions()[1];
    assert_eq!(
        (second["from"].as_u64(), second["to"].as_u64()),
        (Some(3), Some(1)),
        "{second}"
    );

    // SIGTERM: exit 0 with the state written.
    assert_eq!(serve.terminate(), Some(0));
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap_or_default())
            .unwrap_or(Value::Null);
    // (older events are pruned once no rate limit window reads them)
    let queue = &state["policies"]["queue"];
    let last = queue["state"]["events"]
        .as_array()
        .and_then(|e| e.last().cloned());
    assert_eq!(
        last.map(|e| (e["from"].clone(), e["to"].clone())),
        Some((3.into(), 1.into())),
        "{state}"
    );
    assert_eq!(queue["replicas"], 1, "{state}");
    assert!(queue["state"]["last_event"].is_string(), "{state}");
}

fn hold_trace(dir: &Path) -> PathBuf {
    let path = dir.join("load.csv");
    let mut text = String::from("time,q\n");
    for i in 0..60 {
        text.push_str(&format!(
            "2026-01-01T00:{:02}:{:02}Z,{}\n",
            i / 60,
            i % 60,
            10 + (i % 2) * 5
        ));
    }
    write(&path, &text);
    path
}

#[test]
fn edits_reload_a_broken_file_keeps_its_last_good_version_and_overrides_need_the_token() {
    let (wasm, _) = plugins();
    let dir = scratch("serve-reload");
    hold_trace(&dir);
    let port = free_port();
    let policy = |n: u32| {
        format!(
            "policy \"web\" {{\n  target audit \"web\"\n  replicas 1..10\n  every 1s\n  metric q = load \"q\"\n  desired = {n}\n  stabilize down 0s\n  limit up 10 per 1s\n}}\n"
        )
    };
    write(&dir.join("policies/web.scale"), &policy(2));
    let _ = std::fs::create_dir_all(dir.join("out"));
    write(
        &dir.join("serve.ron"),
        &format!(
            r#"(
    sources: [(name: "load", kind: File(path: "load.csv", loop: true))],
    actuators: [(
        name: "audit",
        plugin: "{}",
        settings: {{ "path": "/out/decisions.jsonl" }},
        files: [(host: "out", guest: "/out", write: true)],
    )],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
    override_token: "s3cret-token",
)"#,
            dir.join("plugins/record.wasm").display()
        ),
    );
    let _ = std::fs::create_dir_all(dir.join("plugins"));
    let good_plugin = std::fs::read(wasm.join("policyctl_record.wasm")).unwrap_or_default();
    let _ = std::fs::write(dir.join("plugins/record.wasm"), &good_plugin);
    let serve = Serve::start(&dir.join("serve.ron"), port);
    let recorded = || -> Vec<Value> {
        std::fs::read_to_string(dir.join("out/decisions.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|d| d["policy"] == "web")
            .collect()
    };
    assert!(wait_until(20, || recorded().len() == 1), "{}", serve.logs());
    assert_eq!(recorded()[0]["to"], 2);

    // An edit takes effect within a second or so.
    let edited = Instant::now();
    write(&dir.join("policies/web.scale"), &policy(4));
    assert!(wait_until(10, || recorded().len() == 2), "{}", serve.logs());
    assert!(
        edited.elapsed() < Duration::from_secs(3),
        "reload took {:?}",
        edited.elapsed()
    );
    assert_eq!(recorded()[1]["to"], 4);

    // Broken on disk: the last good version keeps deciding; the error is exported.
    write(
        &dir.join("policies/web.scale"),
        "policy \"web\" {\n  target audit \"web\"\n  replicas 1..\n}\n",
    );
    assert!(
        wait_until(10, || serve.get("/v1/files").1.contains("scale::syntax")),
        "{}",
        serve.get("/v1/files").1
    );
    let (_, metrics) = serve.get("/metrics");
    assert_eq!(
        metric(&metrics, "policyctl_policy_file_errors{"),
        1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "policyctl_reloads_total{result=\"failure\"}") >= 1.0,
        "{metrics}"
    );
    let before = serve.policy("web")["last"]["at"].clone();
    std::thread::sleep(Duration::from_millis(2500));
    let view = serve.policy("web");
    assert_ne!(view["last"]["at"], before, "the policy stopped ticking");
    assert!(
        view["last"]["explanation_text"]
            .to_string()
            .contains("desired = 4"),
        "{view}"
    );
    assert_eq!(recorded().len(), 2);

    // An editor's save through a temporary file and a rename.
    write(&dir.join("policies/.web.scale.swp"), &policy(5));
    let _ = std::fs::rename(
        dir.join("policies/.web.scale.swp"),
        dir.join("policies/web.scale"),
    );
    assert!(wait_until(10, || recorded().len() == 3), "{}", serve.logs());
    assert_eq!(recorded()[2]["to"], 5);
    assert!(!serve.get("/v1/files").1.contains("scale::syntax"));

    // A second file may not take a policy name an unchanged file holds.
    write(&dir.join("policies/dup.scale"), &policy(9));
    assert!(
        wait_until(10, || serve
            .get("/v1/files")
            .1
            .contains("scale::duplicate-policy")),
        "{}",
        serve.get("/v1/files").1
    );
    assert!(
        serve.policy("web")["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("web.scale"))
    );
    let _ = std::fs::remove_file(dir.join("policies/dup.scale"));
    assert!(wait_until(10, || !serve
        .get("/v1/files")
        .1
        .contains("dup.scale")));
    assert_eq!(recorded().len(), 3);

    // Add, rename, remove.
    write(
        &dir.join("policies/api.scale"),
        &policy(3).replace("\"web\"", "\"api\""),
    );
    assert!(
        wait_until(10, || serve.policy("api")["last"]["at"].is_string()),
        "{}",
        serve.logs()
    );
    let _ = std::fs::rename(
        dir.join("policies/api.scale"),
        dir.join("policies/api2.scale"),
    );
    assert!(wait_until(10, || serve.policy("api")["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("api2.scale"))));
    let _ = std::fs::remove_file(dir.join("policies/api2.scale"));
    assert!(
        wait_until(10, || serve.policy("api").get("error").is_some()),
        "{}",
        serve.policy("api")
    );

    // Overrides: refused without the token or with a wrong one.
    let body = r#"{"replicas": 7, "until": "2099-01-01T00:00:00Z"}"#;
    let path = "/v1/policies/web/override";
    assert_eq!(http("POST", port, path, &[], body).0, 401);
    assert_eq!(
        http(
            "POST",
            port,
            path,
            &[("authorization", "Bearer wrong")],
            body
        )
        .0,
        401
    );
    assert_eq!(
        http(
            "POST",
            port,
            path,
            &[("authorization", "Bearer s3cret-token-")],
            body
        )
        .0,
        401
    );
    assert_eq!(
        http(
            "DELETE",
            port,
            path,
            &[("authorization", "Bearer wrong")],
            ""
        )
        .0,
        401
    );
    assert_eq!(recorded().len(), 3);
    let auth = [("authorization", "Bearer s3cret-token")];
    assert_eq!(http("POST", port, path, &auth, body).0, 200);
    assert!(wait_until(10, || recorded().len() == 4), "{}", serve.logs());
    assert_eq!(recorded()[3]["to"], 7);
    assert!(
        recorded()[3]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("manual override"))
    );
    assert_eq!(serve.policy("web")["override"]["replicas"], 7);
    assert_eq!(
        http("POST", port, "/v1/policies/nope/override", &auth, body).0,
        404
    );

    // Every decision is logged as one JSON object per line, with no key twice (the
    // scale target's `target` is not shadowed by tracing's module).
    let logs = serve.logs();
    for line in logs.lines() {
        assert!(
            line.matches("\"target\":").count() <= 1,
            "a repeated key: {line}"
        );
    }
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["policy"] == "web"
            && l["target"] == "web"
            && l["to"] == 7
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("decision"))),
        "{logs}"
    );

    // The override survives a restart.
    assert_eq!(serve.terminate(), Some(0));
    let serve = Serve::start(&dir.join("serve.ron"), port);
    assert_eq!(serve.policy("web")["override"]["replicas"], 7);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(recorded().len(), 4, "the restart changed the count");
    assert_eq!(http("DELETE", port, path, &auth, "").0, 200);
    assert!(wait_until(10, || recorded().len() == 5), "{}", serve.logs());
    assert_eq!(recorded()[4]["to"], 5);

    // A plugin file that no longer loads leaves the previous plugin running.
    let _ = std::fs::write(dir.join("plugins/record.wasm"), b"not a component");
    assert!(
        wait_until(10, || metric(
            &serve.get("/metrics").1,
            "policyctl_plugin_errors{actuator=\"audit\"}"
        ) == 1.0),
        "{}",
        serve.get("/metrics").1
    );
    write(&dir.join("policies/web.scale"), &policy(6));
    assert!(
        wait_until(10, || recorded().len() == 6),
        "{}\n{}",
        serve.policy("web"),
        serve.logs()
    );
    assert_eq!(recorded()[5]["to"], 6);
    let _ = std::fs::write(dir.join("plugins/record.wasm"), &good_plugin);
    assert!(
        wait_until(10, || metric(
            &serve.get("/metrics").1,
            "policyctl_plugin_errors{actuator=\"audit\"}"
        ) == 0.0),
        "{}",
        serve.logs()
    );
    let (_, metrics) = serve.get("/metrics");
    assert!(
        metric(
            &metrics,
            "policyctl_plugin_reloads_total{result=\"success\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &metrics,
            "policyctl_plugin_reloads_total{result=\"failure\"}"
        ) >= 1.0
    );
    assert_eq!(serve.terminate(), Some(0));
}

#[test]
fn sigkill_at_random_moments_never_corrupts_state_or_breaks_a_cooldown() {
    let (wasm, _) = plugins();
    let rt = runtime();
    let dir = scratch("serve-kill");
    // The load swings every second between values that want 2 and 9 replicas.
    let text = per_second_trace("q", 120, |i| if i % 2 == 0 { "9" } else { "2" }.to_string());
    write(&dir.join("swing.csv"), &text);
    let receiver = Receiver::start(&rt, 1);
    let port = free_port();
    write(
        &dir.join("policies/swing.scale"),
        "policy \"swing\" {\n  target hooks \"swing\"\n  replicas 1..10\n  every 1s\n  metric q = trace \"q\"\n  desired = q\n  stabilize down 0s\n  cooldown up 4s\n  cooldown down 4s\n}\n",
    );
    write(
        &dir.join("serve.ron"),
        &format!(
            r#"(
    sources: [(name: "trace", kind: File(path: "swing.csv", loop: true))],
    actuators: [{}],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
    state_file: "state.json",
)"#,
            receiver.actuator(&wasm)
        ),
    );
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..20 {
        let mut serve = Serve::start(&dir.join("serve.ron"), port);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 2200));
        let _ = serve.child.kill();
        let _ = serve.child.wait();
        if let Ok(text) = std::fs::read_to_string(dir.join("state.json")) {
            let parsed: Result<Value, _> = serde_json::from_str(&text);
            assert!(
                parsed.as_ref().is_ok_and(|v| v["version"] == 1),
                "round {round}: state file unreadable: {text}"
            );
        }
    }
    // Every distinct decision (by id, which carries its tick's time) respects the
    // 4 s cooldown after the one before.
    let mut ids: Vec<(i64, Value)> = receiver
        .decisions()
        .into_iter()
        .filter_map(|d| {
            let at = d["id"].as_str()?.rsplit('@').next()?.parse::<i64>().ok()?;
            Some((at, d))
        })
        .collect();
    ids.sort_by_key(|(at, _)| *at);
    ids.dedup_by_key(|(at, _)| *at);
    assert!(ids.len() >= 3, "too few decisions to judge: {ids:?}");
    for pair in ids.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 4000,
            "cooldown broken across a restart: {} then {}",
            pair[0].1,
            pair[1].1
        );
    }
}

#[test]
fn overrides_are_refused_when_no_token_is_configured() {
    let (wasm, _) = plugins();
    let dir = scratch("serve-notoken");
    hold_trace(&dir);
    let port = free_port();
    write(
        &dir.join("policies/p.scale"),
        "policy \"p\" {\n  target audit \"p\"\n  replicas 1..3\n  metric q = load \"q\"\n  desired = 1\n}\n",
    );
    let _ = std::fs::create_dir_all(dir.join("out"));
    write(
        &dir.join("serve.ron"),
        &format!(
            r#"(
    sources: [(name: "load", kind: File(path: "load.csv"))],
    actuators: [(name: "audit", plugin: "{}", settings: {{ "path": "/out/d.jsonl" }}, files: [(host: "out", guest: "/out", write: true)])],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
)"#,
            wasm.join("policyctl_record.wasm").display()
        ),
    );
    let serve = Serve::start(&dir.join("serve.ron"), port);
    let (status, body) = http(
        "POST",
        port,
        "/v1/policies/p/override",
        &[("authorization", "Bearer anything")],
        r#"{"replicas": 2}"#,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("override_token"), "{body}");
    assert_eq!(serve.get("/readyz").0, 200);
    assert!(serve.get("/v1/policies").1.contains("\"p\""));
    assert_eq!(serve.signal("-INT"), Some(0), "SIGINT stops it cleanly too");
}

#[test]
fn the_backtest_replays_prometheus_history_as_simulate_replays_the_same_series() {
    let dir = scratch("serve-backtest");
    // Six hours of a load that rises and falls, one sample a minute, ending a minute ago.
    let end = chrono::Utc::now().timestamp() / 60 * 60 - 60;
    let start = end - 6 * 3600;
    let mut openmetrics = String::from("# TYPE jobs gauge\n");
    let mut csv = String::from("time,jobs\n");
    for (i, t) in (start..=end).step_by(60).enumerate() {
        let phase = (i % 120) as f64;
        let v = if phase < 60.0 {
            5.0 + phase * 2.0
        } else {
            125.0 - (phase - 60.0) * 2.0
        };
        openmetrics.push_str(&format!("jobs {v} {t}\n"));
        let at = chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default();
        csv.push_str(&format!("{at},{v}\n"));
    }
    openmetrics.push_str("# EOF\n");
    write(&dir.join("history.csv"), &csv);
    let prometheus = backfilled(&dir, &openmetrics);

    let policy = "policy \"jobs\" {\n  target k8s \"jobs\"\n  replicas 1..40\n  every 1m\n  metric jobs = prometheus \"max(jobs)\"\n  track jobs per replica 5\n  stabilize down 5m\n}\n";
    write(&dir.join("jobs.scale"), policy);
    write(
        &dir.join("jobs-v2.scale"),
        &policy.replace("per replica 5", "per replica 10"),
    );
    let end_at = chrono::DateTime::from_timestamp(end, 0)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default();
    let backtest = support::policyctl(
        &dir,
        &[
            "simulate",
            "jobs.scale",
            "--prometheus",
            &prometheus.url(),
            "--since",
            "6h",
            "--end",
            &end_at,
            "--format",
            "json",
        ],
    );
    assert_eq!(backtest.code, 0, "{}{}", backtest.out, backtest.err);
    let replay = support::policyctl(
        &dir,
        &[
            "simulate",
            "jobs.scale",
            "--trace",
            "history.csv",
            "--format",
            "json",
        ],
    );
    assert_eq!(replay.code, 0, "{}", replay.err);
    let decisions = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains("\"reason\""))
            .map(str::to_string)
            .collect()
    };
    assert!(decisions(&replay.out).len() >= 6, "{}", replay.out);
    assert_eq!(decisions(&backtest.out), decisions(&replay.out));

    let compared = support::policyctl(
        &dir,
        &[
            "simulate",
            "jobs.scale",
            "--prometheus",
            &prometheus.url(),
            "--since",
            "6h",
            "--end",
            &end_at,
            "--compare",
            "jobs-v2.scale",
        ],
    );
    assert_eq!(compared.code, 0, "{}", compared.err);
    for needle in [
        "summary",
        "jobs.scale",
        "jobs-v2.scale",
        "replica-hours",
        "scale events",
        "flaps",
        "above `track jobs per replica 5`",
    ] {
        assert!(
            compared.out.contains(needle),
            "{needle} missing:\n{}",
            compared.out
        );
    }
}

#[test]
fn check_config_reports_unknown_actuators_sources_and_queries_and_unloadable_plugins() {
    let dir = scratch("check-config");
    write(
        &dir.join("policies/p.scale"),
        "policy \"p\" {\n  target k8z \"p\"\n  replicas 1..3\n  metric a = hots \"cpu\"\n  metric b = host \"cpux\"\n  desired = a + b\n}\n",
    );
    write(&dir.join("broken.wasm"), "not a component");
    write(
        &dir.join("serve.ron"),
        r#"(
    sources: [(name: "host", kind: Host)],
    actuators: [(name: "k8s", plugin: "broken.wasm")],
    policies: ["policies"],
)"#,
    );
    let run = support::policyctl(
        &dir,
        &["check", "--config", "serve.ron", "--format", "json"],
    );
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    let report: Value = serde_json::from_str(&run.out).unwrap_or(Value::Null);
    let codes: Vec<&str> = report["diagnostics"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["code"].as_str()).collect())
        .unwrap_or_default();
    for code in [
        "scale::unknown-actuator",
        "scale::unknown-source",
        "scale::invalid-query",
        "scale::plugin-load",
    ] {
        assert!(codes.contains(&code), "{code} missing: {}", run.out);
    }
    let human = support::policyctl(&dir, &["check", "--config", "serve.ron"]);
    assert!(human.out.contains("did you mean `k8s`?"), "{}", human.out);
    assert!(human.out.contains("did you mean `host`?"), "{}", human.out);

    write(
        &dir.join("bad.ron"),
        "(\n  sources: [(name: \"x\", kind: Prometheus(url: \"ftp://nowhere\"))],\n  polices: [],\n)",
    );
    let bad = support::policyctl(&dir, &["check", "--config", "bad.ron", "--format", "json"]);
    assert_eq!(bad.code, 1, "{}", bad.out);
    let report: Value = serde_json::from_str(&bad.out).unwrap_or(Value::Null);
    let d = &report["diagnostics"][0];
    assert_eq!(d["code"], "scale::config-invalid", "{}", bad.out);
    assert_eq!(
        (d["line"].as_u64(), d["file"].as_str()),
        (Some(3), Some("bad.ron")),
        "{}",
        bad.out
    );
}

#[test]
fn the_shipped_local_configuration_passes_check() {
    let _ = plugins();
    let run = support::policyctl(
        support::root(),
        &["check", "--deny-warnings", "--config", "examples/local.ron"],
    );
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
}

#[test]
fn for_windows_are_rebuilt_from_prometheus_history_at_start_up() {
    let (wasm, _) = plugins();
    let rt = runtime();
    let dir = scratch("serve-windows");
    // Ten minutes of a queue above its threshold, up to a few seconds ago, and the
    // replica count the policy reads with `current from`.
    let now = chrono::Utc::now().timestamp();
    let mut openmetrics = String::from("# TYPE backlog gauge\n");
    for t in (now - 600..now - 2).step_by(15) {
        openmetrics.push_str(&format!("backlog 500 {t}\n"));
    }
    openmetrics.push_str("# TYPE running gauge\n");
    for t in (now - 600..now - 2).step_by(15) {
        openmetrics.push_str(&format!("running 2 {t}\n"));
    }
    openmetrics.push_str("# EOF\n");
    let prometheus = backfilled(&dir, &openmetrics);
    let receiver = Receiver::start(&rt, 2);
    let port = free_port();
    write(
        &dir.join("policies/backlog.scale"),
        "policy \"backlog\" {\n  target hooks \"backlog\"\n  replicas 1..10\n  every 2s\n  metric q = prometheus \"max(backlog)\"\n  metric r = prometheus \"max(running)\"\n  current from r\n  when q > 100 for 5m scale up by 2\n}\n",
    );
    write(
        &dir.join("serve.ron"),
        &format!(
            r#"(
    sources: [(name: "prometheus", kind: Prometheus(url: "{}"))],
    actuators: [{}],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
)"#,
            prometheus.url(),
            receiver.actuator(&wasm)
        ),
    );
    let started = Instant::now();
    let serve = Serve::start(&dir.join("serve.ron"), port);
    // The window held for ten minutes already: the first tick decides, not one five
    // minutes from now.
    assert!(
        wait_until(20, || !receiver.decisions().is_empty()),
        "no decision: the window was not rebuilt\n{}\n{}",
        serve.policy("backlog"),
        serve.logs()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let d = &receiver.decisions()[0];
    assert_eq!(
        (d["from"].as_u64(), d["to"].as_u64()),
        (Some(2), Some(4)),
        "{d}"
    );
    // The tick shows its result once the actuator has answered.
    assert!(
        wait_until(10, || serve.policy("backlog")["last"]["current_from"]
            == "current from r"),
        "{}",
        serve.policy("backlog")
    );
}

#[test]
fn a_source_that_never_answers_delays_no_other_policy() {
    let (wasm, _) = plugins();
    let dir = scratch("serve-stuck");
    hold_trace(&dir);
    // Accepts connections and never answers.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let stuck_port = stuck.local_addr().map(|a| a.port()).unwrap_or_default();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in stuck.incoming() {
            held.push(s);
        }
    });
    let port = free_port();
    write(
        &dir.join("policies/slow.scale"),
        "policy \"slow\" {\n  target audit \"slow\"\n  replicas 1..3\n  every 1s\n  metric q = stuck \"up\"\n  desired = q\n}\n",
    );
    write(
        &dir.join("policies/fast.scale"),
        "policy \"fast\" {\n  target audit \"fast\"\n  replicas 1..3\n  every 1s\n  metric q = load \"q\"\n  desired = 1\n}\n",
    );
    write(
        &dir.join("policies/fast2.scale"),
        "policy \"fast2\" {\n  target audit \"fast2\"\n  replicas 1..3\n  every 1s\n  metric same = load \"q\"\n  desired = 1\n}\n",
    );
    let _ = std::fs::create_dir_all(dir.join("out"));
    write(
        &dir.join("serve.ron"),
        &format!(
            r#"(
    sources: [
        (name: "stuck", kind: Prometheus(url: "http://127.0.0.1:{stuck_port}", timeout_ms: 3000)),
        (name: "load", kind: File(path: "load.csv", loop: true)),
    ],
    actuators: [(name: "audit", plugin: "{}", settings: {{ "path": "/out/d.jsonl" }}, files: [(host: "out", guest: "/out", write: true)])],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
)"#,
            wasm.join("policyctl_record.wasm").display()
        ),
    );
    let serve = Serve::start(&dir.join("serve.ron"), port);
    std::thread::sleep(Duration::from_secs(6));
    let (_, metrics) = serve.get("/metrics");
    let fast = metric(&metrics, "policyctl_ticks_total{policy=\"fast\"}");
    assert!(
        fast >= 5.0,
        "the fast policy ticked {fast} times in 6 s:\n{metrics}"
    );
    let slow = serve.policy("slow");
    assert!(
        slow["last"]["missing"]["q"]
            .as_str()
            .is_some_and(|r| r.contains("timed out")),
        "{slow}"
    );
    assert!(
        metric(&metrics, "policyctl_ticks_skipped_total{policy=\"slow\"}") >= 1.0,
        "{metrics}"
    );
    // Two policies send the same query at the same ticks: it goes out once.
    let fast2 = metric(&metrics, "policyctl_ticks_total{policy=\"fast2\"}");
    let fetches = metric(&metrics, "policyctl_metric_fetches_total{source=\"load\"}");
    assert!(fast2 >= 5.0, "{metrics}");
    assert!(
        fetches <= fast.max(fast2) + 1.0,
        "{fetches} fetches for {fast} + {fast2} ticks:\n{metrics}"
    );
}

/// Shadow mode: a policy beside a live autoscaler (its desired count as kube-state-metrics
/// exports it, from a real Prometheus) decides as dry-run, exports both counts and their
/// difference, and shows them in `/v1/policies/NAME`. Removing the entry makes it live.
#[test]
fn a_shadowed_policy_decides_as_dry_run_beside_the_other_autoscaler() {
    let dir = scratch("serve-shadow");
    let now = chrono::Utc::now().timestamp() / 15 * 15;
    let mut om = String::from("# TYPE jobs gauge\n");
    for t in (now - 1800..=now - 15).step_by(15) {
        om.push_str(&format!("jobs 42 {t}\n"));
    }
    om.push_str("# TYPE kube_horizontalpodautoscaler_status_desired_replicas gauge\n");
    for t in (now - 1800..=now - 15).step_by(15) {
        om.push_str(&format!(
            "kube_horizontalpodautoscaler_status_desired_replicas{{namespace=\"shop\",horizontalpodautoscaler=\"web\"}} 4 {t}\n"
        ));
    }
    om.push_str("# EOF\n");
    let prometheus = backfilled(&dir, &om);
    let port = free_port();
    let sources = format!(
        r#"(name: "prometheus", kind: Prometheus(url: "{}"))"#,
        prometheus.url()
    );
    let query = r#"kube_horizontalpodautoscaler_status_desired_replicas{namespace=\"shop\",horizontalpodautoscaler=\"web\"}"#;
    let config = support::record_config(
        &dir,
        port,
        &sources,
        &format!(r#"shadow: [(policy: "shop/web", source: "prometheus", query: "{query}")],"#),
    );
    write(
        &dir.join("policies/web.scale"),
        "policy \"shop/web\" {\n  target audit \"web\"\n  replicas 2..20\n  every 1s\n  metric jobs = prometheus \"max(jobs)\"\n  track jobs per replica 5\n}\n",
    );
    let serve = Serve::start(&config, port);
    let mut last = serde_json::Value::Null;
    let ready = wait_until(30, || {
        last = serve.policy("shop%2Fweb");
        last["last"]["shadow"]["other"].is_number() && last["last"]["decision"].is_object()
    });
    assert!(ready, "{last:#}\n{}", serve.logs());
    let shadow = &last["last"]["shadow"];
    // ceil(42 / 5) = 9, which the default `limit up` cuts to 2 + 4 = 6 from the count
    // that really is (2: a dry run records no scale event), against the HPA's 4.
    assert_eq!(shadow["ours"], 6, "{shadow}");
    assert_eq!(shadow["other"], 4.0, "{shadow}");
    assert_eq!(shadow["difference"], 2.0, "{shadow}");
    assert_eq!(last["last"]["applied"]["status"], "dry_run", "{last:#}");
    let (_, metrics) = serve.get("/metrics");
    assert_eq!(
        metric(&metrics, "policyctl_shadow_desired{policy=\"shop/web\"}"),
        6.0
    );
    assert_eq!(
        metric(
            &metrics,
            "policyctl_shadow_other_desired{policy=\"shop/web\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(&metrics, "policyctl_shadow_divergence{policy=\"shop/web\"}"),
        2.0
    );
    // Nothing reached the actuator.
    let sent = std::fs::read_to_string(dir.join("out/d.jsonl")).unwrap_or_default();
    assert!(
        !sent.contains("\"to\""),
        "a shadowed policy sent a decision: {sent}"
    );
    assert_eq!(serve.terminate(), Some(0));

    // A shadow entry naming no source is a configuration error.
    let bad = support::record_config(
        &dir,
        port,
        &sources,
        r#"shadow: [(policy: "shop/web", source: "prometheos", query: "x")],"#,
    );
    let check = support::policyctl(
        &dir,
        &["check", "--config", bad.to_str().unwrap_or_default()],
    );
    assert_ne!(check.code, 0);
    assert!(
        format!("{}{}", check.out, check.err)
            .contains("shadow of `shop/web`: no source `prometheos`"),
        "{}{}",
        check.out,
        check.err
    );
}

/// At 100,000 policies a round's ticks all wait at once at their fetches and at the
/// actuator, so a tick's future must stay small there (it was 2.8 KB: what follows
/// the fetches is boxed). And the state writer, which serialises each policy's state
/// under its lock straight into the file, writes what the next start reads back.
#[test]
fn a_waiting_tick_is_small_and_the_streamed_state_file_reads_back() {
    use policyctl::serve::{persist, policies};

    let dir = scratch("serve-small-tick");
    write(
        &dir.join("load.csv"),
        "time,q\n2026-01-01T00:00:00Z,250\n2026-01-01T00:00:01Z,250\n",
    );
    let scale: String = (0..3)
        .map(|i| {
            format!(
                "policy \"p{i}\" {{\n  target audit \"t{i}\"\n  replicas 1..10\n  every 10s\n  metric q = load \"q\"\n  track q per replica 50\n}}\n"
            )
        })
        .collect();
    write(&dir.join("policies/fleet.scale"), &scale);
    let service = support::in_process_service(&dir, &plugins().0.join("policyctl_record.wasm"));
    let state_file = dir.join("policyctl-state.json");
    let rt = runtime();
    rt.block_on(policies::reload(&service));
    let slots = service.all_slots();
    assert_eq!(slots.len(), 3);

    let tick = service.tick(&slots[0]);
    let size = std::mem::size_of_val(&tick);
    assert!(
        size <= 512,
        "a tick's future is {size} bytes: 100,000 waiting at once would hold {} MB",
        size * 100_000 / 1_000_000
    );
    rt.block_on(tick);
    for slot in &slots[1..] {
        rt.block_on(service.tick(slot));
    }
    rt.block_on(service.persist_final());

    let (snapshot, warning) = persist::load(&state_file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(warning, None);
    assert_eq!(snapshot.version, persist::VERSION);
    let names: Vec<&str> = snapshot.policies.keys().map(String::as_str).collect();
    assert_eq!(names, ["p0", "p1", "p2"]);
    for (name, state) in &snapshot.policies {
        let last = slots
            .iter()
            .find(|s| s.name == *name)
            .and_then(|s| s.last())
            .unwrap_or_else(|| panic!("{name} did not tick"));
        assert_eq!(state.ticked_at, Some(last.at), "{name}");
        // 250 per 50 a replica: the dry-run decision is recorded, and 5 remembered for
        // stabilisation.
        assert_eq!(last.decision.as_ref().map(|d| d.to), Some(5), "{name}");
        assert!(!state.state.recommendations.is_empty(), "{name}: {state:?}");
        assert_eq!(state.records.back().map(|r| r.to), Some(Some(5)), "{name}");
    }
}
