//! Actuators for real: the four shipped plugins, built from source, against a file, real
//! scripts, a real HTTP server and a fake Kubernetes API server; and hostile plugins,
//! each of which must end as a clean, typed failure within its budget while other calls
//! finish on time.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use policyctl::actuate::config::{AllowCommand, FileGrant, InjectHeader};
use policyctl::actuate::{ActuatorConfig, Failure, Limits, Request, Runtime};
use support::{Reply, Server, plugins, scratch};

/// One compiled-component cache for every run of these tests: its files are named by
/// content and engine, so it stays as small as the set of plugins.
fn runtime() -> Runtime {
    Runtime::new(Some(std::env::temp_dir().join("policyctl-test-cache")))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn shipped(name: &str) -> PathBuf {
    plugins().0.join(format!("policyctl_{name}.wasm"))
}

fn actuator(plugin: PathBuf) -> ActuatorConfig {
    ActuatorConfig::new("test", plugin)
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn request(id: &str, target: &str, from: u32, to: u32) -> Request {
    Request {
        id: id.into(),
        policy: "web".into(),
        target: target.into(),
        from,
        to,
        reason: "test".into(),
        dry_run: false,
    }
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn record_appends_each_decision_once_and_observes_it() {
    let dir = scratch("record");
    let rt = runtime();
    let mut config = actuator(shipped("record"));
    config.settings = settings(&[("path", "/out/decisions.jsonl")]);
    config.files = vec![FileGrant {
        host: dir.to_path_buf(),
        guest: "/out".into(),
        write: true,
    }];
    let a = rt
        .load(&config, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    tokio().block_on(async {
        assert!(matches!(
            a.observe("web").await.0,
            Err(Failure::Unsupported(_))
        ));
        let first = a
            .apply(&request("d1", "web", 2, 5))
            .await
            .0
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.replicas, 5);
        // The same id again (a retry) is not recorded twice.
        a.apply(&request("d1", "web", 2, 5))
            .await
            .0
            .unwrap_or_else(|e| panic!("{e}"));
        a.apply(&request("d2", "web", 5, 3))
            .await
            .0
            .unwrap_or_else(|e| panic!("{e}"));
        let observed = a.observe("web").await.0.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((observed.replicas, observed.ready), (3, true));
    });
    let text = std::fs::read_to_string(dir.join("decisions.jsonl")).unwrap_or_default();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        (
            lines[0]["id"].as_str(),
            lines[0]["to"].as_u64(),
            lines[0]["target"].as_str()
        ),
        (Some("d1"), Some(5), Some("web"))
    );
}

#[test]
fn command_runs_granted_scripts_with_the_decision_in_argv() {
    let dir = scratch("command");
    let state = dir.join("workers");
    let scale = dir.join("scale.sh");
    let count = dir.join("count.sh");
    // A real script that starts and stops N local worker processes (sleeps), tracked
    // in a pid file per worker.
    std::fs::write(
        &scale,
        format!(
            "#!/bin/sh\nset -e\nmkdir -p {s}\nwant=$2\nhave=$(ls {s} | wc -l)\nwhile [ \"$have\" -lt \"$want\" ]; do sleep 60 >/dev/null 2>&1 & echo $! > {s}/$!; have=$((have+1)); done\nfor f in $(ls {s} | head -n $((have-want))); do kill $f 2>/dev/null || true; rm {s}/$f; done\necho \"$1 now runs $want workers\"\n",
            s = state.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &count,
        format!("#!/bin/sh\nls {} 2>/dev/null | wc -l\n", state.display()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for script in [&scale, &count] {
        let _ = Command::new("chmod").arg("+x").arg(script).status();
    }
    let rt = runtime();
    let mut config = actuator(shipped("command"));
    let (scale_s, count_s) = (scale.display().to_string(), count.display().to_string());
    config.settings = settings(&[
        (
            "apply",
            &format!("[\"{scale_s}\", \"{{target}}\", \"{{desired}}\"]"),
        ),
        ("observe", &format!("[\"{count_s}\", \"{{target}}\"]")),
    ]);
    config.allow_commands = vec![
        AllowCommand {
            program: scale_s.clone(),
            args: vec!["{name}".into(), "{int}".into()],
            args_prefix: None,
        },
        AllowCommand {
            program: count_s.clone(),
            args: vec!["{name}".into()],
            args_prefix: None,
        },
    ];
    let a = rt
        .load(&config, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    tokio().block_on(async {
        let outcome = a
            .apply(&request("c1", "workers", 0, 3))
            .await
            .0
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.message, "workers now runs 3 workers");
        assert_eq!(a.observe("workers").await.0.map(|o| o.replicas), Ok(3));
        a.apply(&request("c2", "workers", 3, 1))
            .await
            .0
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.observe("workers").await.0.map(|o| o.replicas), Ok(1));
        a.apply(&request("c3", "workers", 1, 0))
            .await
            .0
            .unwrap_or_else(|e| panic!("{e}"));
    });

    // A program that is not granted is refused by the host, as a permanent error.
    let mut denied = config.clone();
    denied.allow_commands = vec![AllowCommand {
        program: count_s,
        args: vec!["{name}".into()],
        args_prefix: None,
    }];
    let a = rt
        .load(&denied, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let (result, _) = tokio().block_on(a.apply(&request("c4", "workers", 0, 2)));
    match result {
        Err(Failure::Denied(why)) => assert!(why.contains("not granted"), "{why}"),
        other => panic!("expected a denied command, got {other:?}"),
    }
}

use std::process::Command;

#[test]
fn command_exit_75_is_retried_with_the_same_decision() {
    let dir = scratch("command-retry");
    let flaky = dir.join("flaky.sh");
    let seen = dir.join("seen");
    // Fails with EX_TEMPFAIL the first time, succeeds the second; logs the id each time.
    std::fs::write(
        &flaky,
        format!(
            "#!/bin/sh\necho $1 >> {s}\n[ $(wc -l < {s}) -ge 2 ] || exit 75\necho ok\n",
            s = seen.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = Command::new("chmod").arg("+x").arg(&flaky).status();
    let rt = runtime();
    let mut config = actuator(shipped("command"));
    let flaky_s = flaky.display().to_string();
    config.settings = settings(&[("apply", &format!("[\"{flaky_s}\", \"{{id}}\"]"))]);
    config.allow_commands = vec![AllowCommand {
        program: flaky_s,
        args: vec!["{name}".into()],
        args_prefix: None,
    }];
    let a = rt
        .load(&config, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = tokio()
        .block_on(a.apply(&request("same-id", "t", 1, 2)))
        .0
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.attempts, 2);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap_or_default(),
        "same-id\nsame-id\n",
        "the retry reuses the idempotency key"
    );
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn webhook_posts_signed_decisions_to_a_real_server() {
    let tokio = tokio();
    tokio.block_on(async {
        let server = Server::start(|r| match r.method.as_str() {
            "GET" => Reply::json(200, r#"{"replicas": 4, "ready": false}"#),
            _ => Reply::json(200, "{}"),
        })
        .await;
        let rt = runtime();
        let mut config = actuator(shipped("webhook"));
        let base = format!("http://127.0.0.1:{}", server.port);
        config.settings = settings(&[
            ("url", &format!("{base}/scale")),
            ("observe_url", &format!("{base}/state/{{target}}")),
            ("hmac_secret", "s3cret"),
        ]);
        config.allow_http = vec![base.clone()];
        let a = rt
            .load(&config, Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let observed = a.observe("web").await.0.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((observed.replicas, observed.ready), (4, false));
        let outcome = a
            .apply(&request("w1", "web", 4, 6))
            .await
            .0
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.replicas, 6);
        let requests = server.requests();
        assert_eq!(requests[0].path, "/state/web");
        let post = requests
            .iter()
            .find(|r| r.method == "POST")
            .unwrap_or_else(|| panic!("no POST: {requests:?}"));
        assert_eq!(post.path, "/scale");
        assert_eq!(post.header("idempotency-key"), Some("w1"));
        assert_eq!(post.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap_or_default();
        assert_eq!(
            (
                body["from"].as_u64(),
                body["to"].as_u64(),
                body["target"].as_str()
            ),
            (Some(4), Some(6), Some("web"))
        );
        assert_eq!(
            post.header("x-policyctl-signature"),
            Some(format!("sha256={}", hmac_hex("s3cret", &post.body)).as_str())
        );
    });
}

#[test]
fn webhook_retries_transient_errors_and_never_permanent_ones() {
    let tokio = tokio();
    tokio.block_on(async {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let server = Server::start(move |r| {
            if r.path == "/gone" {
                return Reply::json(404, r#"{"error": "no such service"}"#);
            }
            match counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Reply::json(503, "{}"),
                1 => Reply {
                    status: 429,
                    headers: vec![("retry-after".into(), "0".into())],
                    body: String::new(),
                },
                _ => Reply::json(200, "{}"),
            }
        })
        .await;
        let rt = runtime();
        let base = format!("http://127.0.0.1:{}", server.port);
        let mut config = actuator(shipped("webhook"));
        config.settings = settings(&[("url", &format!("{base}/scale"))]);
        config.allow_http = vec![base.clone()];
        let a = rt
            .load(&config, Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let outcome = a
            .apply(&request("retry-me", "web", 1, 2))
            .await
            .0
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.attempts, 3);
        let keys: Vec<String> = server
            .requests()
            .iter()
            .filter_map(|r| r.header("idempotency-key").map(str::to_string))
            .collect();
        assert_eq!(keys, vec!["retry-me"; 3]);

        config.settings = settings(&[("url", &format!("{base}/gone"))]);
        let a = rt
            .load(&config, Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let before = server.requests().len();
        let (result, _) = a.apply(&request("nope", "web", 1, 2)).await;
        assert!(matches!(result, Err(Failure::NotFound(_))), "{result:?}");
        assert_eq!(
            server.requests().len(),
            before + 1,
            "a permanent error is not retried"
        );
    });
}

/// The documented shapes of `autoscaling/v1` `Scale`, served by a FAKE API server:
/// no Kubernetes runs here.
fn scale_json(name: &str, namespace: &str, spec: u32, status: u32) -> String {
    format!(
        r#"{{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{{"name":"{name}","namespace":"{namespace}","resourceVersion":"7"}},"spec":{{"replicas":{spec}}},"status":{{"replicas":{status},"selector":"app={name}"}}}}"#
    )
}

#[test]
fn kubernetes_against_a_fake_api_server() {
    let dir = scratch("kube");
    let token = dir.join("token");
    std::fs::write(&token, "sekret-token\n").unwrap_or_else(|e| panic!("{e}"));
    let tokio = tokio();
    tokio.block_on(async {
        let replicas = std::sync::Arc::new(std::sync::Mutex::new(3u32));
        let store = replicas.clone();
        let fake = Server::start(move |r| {
            if r.header("authorization") != Some("Bearer sekret-token") {
                return Reply::json(401, r#"{"kind":"Status","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#);
            }
            let path = r.path.split('?').next().unwrap_or_default();
            let Some(rest) = path.strip_prefix("/apis/apps/v1/namespaces/shop/deployments/") else {
                return Reply::json(404, r#"{"kind":"Status","status":"Failure","message":"not found","reason":"NotFound","code":404}"#);
            };
            let name = rest.trim_end_matches("/scale");
            if name != "web" {
                return Reply::json(404, format!(r#"{{"kind":"Status","status":"Failure","message":"deployments.apps \"{name}\" not found","reason":"NotFound","code":404}}"#));
            }
            let mut current = store.lock().unwrap_or_else(|e| e.into_inner());
            match r.method.as_str() {
                "GET" => Reply::json(200, scale_json("web", "shop", *current, *current)),
                "PATCH" => {
                    if r.header("content-type") != Some("application/merge-patch+json") {
                        return Reply::json(415, r#"{"kind":"Status","code":415}"#);
                    }
                    let patch: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    let want = patch["spec"]["replicas"].as_u64().unwrap_or(0) as u32;
                    if !r.path.contains("dryRun=All") {
                        *current = want;
                    }
                    Reply::json(200, scale_json("web", "shop", want, *current))
                }
                _ => Reply::json(405, "{}"),
            }
        })
        .await;
        let rt = runtime();
        let api = format!("http://127.0.0.1:{}", fake.port);
        let mut config = actuator(shipped("kubernetes"));
        config.settings = settings(&[("api_url", &api)]);
        config.allow_http = vec![api.clone()];
        config.inject_headers = vec![InjectHeader { url: api.clone(), header: "Authorization".into(), value_from_file: token.clone() }];
        // The token lives only in the host's file and in the injected header.
        std::fs::write(&token, "Bearer sekret-token\n").unwrap_or_else(|e| panic!("{e}"));
        let a = rt.load(&config, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));

        let observed = a.observe("shop/deployment/web").await.0.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((observed.replicas, observed.ready), (3, true));
        let mut dry = request("k0", "shop/deployment/web", 3, 9);
        dry.dry_run = true;
        let outcome = a.apply(&dry).await.0.unwrap_or_else(|e| panic!("{e}"));
        assert!(outcome.message.contains("dry run"), "{}", outcome.message);
        assert_eq!(*replicas.lock().unwrap_or_else(|e| e.into_inner()), 3, "a dry run persists nothing");
        let outcome = a.apply(&request("k1", "shop/deployment/web", 3, 6)).await.0.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.replicas, 6);
        assert_eq!(*replicas.lock().unwrap_or_else(|e| e.into_inner()), 6);

        assert!(matches!(a.observe("shop/deployment/api").await.0, Err(Failure::NotFound(_))));
        assert!(matches!(a.observe("shop/cronjob/web").await.0, Err(Failure::InvalidDecision(_))));
        let patch = fake.requests().into_iter().find(|r| r.method == "PATCH").unwrap_or_else(|| panic!("no PATCH"));
        assert_eq!(patch.path, "/apis/apps/v1/namespaces/shop/deployments/web/scale?dryRun=All");

        // Without the injected token the fake answers 401: forbidden, not retried.
        config.inject_headers.clear();
        let a = rt.load(&config, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(a.apply(&request("k2", "shop/deployment/web", 6, 7)).await.0, Err(Failure::Forbidden(_))));
    });
}

fn hostile(attack: &str, extra: &[(&str, &str)], limits: Limits) -> ActuatorConfig {
    let mut config = actuator(plugins().1.join("policyctl_hostile.wasm"));
    let mut pairs = vec![("attack", attack)];
    pairs.extend_from_slice(extra);
    config.settings = settings(&pairs);
    config.limits = limits;
    config
}

fn budget(ms: u64) -> Limits {
    Limits {
        timeout_ms: ms,
        attempts: 1,
        ..Limits::default()
    }
}

#[test]
fn hostile_plugins_fail_cleanly_within_their_budget() {
    let rt = runtime();
    let tokio = tokio();
    let run = |config: ActuatorConfig| {
        let a = rt
            .load(&config, Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let (result, log) = tokio.block_on(a.apply(&request("h", "t", 1, 2)));
        (result, log, started.elapsed())
    };

    let (result, _, took) = run(hostile("loop", &[], budget(300)));
    assert!(matches!(result, Err(Failure::Timeout(_))), "{result:?}");
    assert!(
        took < Duration::from_millis(1300),
        "an infinite loop took {took:?} to stop"
    );

    let (result, _, _) = run(hostile(
        "memory",
        &[],
        Limits {
            memory_mib: 32,
            ..budget(5000)
        },
    ));
    assert!(
        matches!(result, Err(Failure::MemoryLimit(32))),
        "{result:?}"
    );

    let (result, _, _) = run(hostile("trap", &[], budget(2000)));
    assert!(matches!(result, Err(Failure::Trap(_))), "{result:?}");

    let (result, _, _) = run(hostile("recursion", &[], budget(5000)));
    assert!(matches!(result, Err(Failure::StackOverflow)), "{result:?}");

    let (result, _, _) = run(hostile("file-escape", &[], budget(2000)));
    match result {
        Err(Failure::Forbidden(why)) => assert!(!why.contains("root:"), "{why}"),
        other => panic!("reading outside the preopens must fail: {other:?}"),
    }

    let (result, _, _) = run(hostile("command-not-allowed", &[], budget(2000)));
    match result {
        Err(Failure::Denied(why)) => assert!(
            why.contains("`/bin/sh` with these arguments is not granted"),
            "{why}"
        ),
        other => panic!("an ungranted command must be denied: {other:?}"),
    }

    let (result, log, took) = run(hostile("log-flood", &[], budget(10_000)));
    assert!(
        result.is_ok() || matches!(result, Err(Failure::Timeout(_))),
        "{result:?}"
    );
    assert_eq!(log.lines.len(), Limits::default().log_lines);
    assert!(
        log.dropped > 0
            && log
                .lines
                .iter()
                .all(|l| l.message.len() <= Limits::default().log_line_bytes + 3)
    );
    assert!(took < Duration::from_secs(11));

    let (result, _, _) = run(hostile("environment", &[], budget(2000)));
    assert_eq!(
        result.map(|o| o.replicas),
        Ok(0),
        "the plugin sees no environment variable"
    );
}

#[test]
fn hostile_http_is_refused_before_any_connection() {
    let tokio = tokio();
    tokio.block_on(async {
        let server = Server::start(|_| Reply::json(200, "{}")).await;
        let rt = runtime();
        // Not granted at all.
        let config = hostile(
            "http-not-granted",
            &[("url", &format!("http://127.0.0.1:{}/", server.port))],
            budget(3000),
        );
        let a = rt
            .load(&config, Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        match a.apply(&request("h1", "t", 1, 2)).await.0 {
            Err(Failure::Denied(why)) => assert!(why.contains("is not granted"), "{why}"),
            other => panic!("expected a denial, got {other:?}"),
        }
        // Granted by name, but the name resolves to loopback, which the grant does not
        // name literally.
        let url = format!("http://localhost:{}", server.port);
        let mut config = hostile("http-private", &[("url", &format!("{url}/"))], budget(3000));
        config.allow_http = vec![url];
        let a = rt
            .load(&config, Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        match a.apply(&request("h2", "t", 1, 2)).await.0 {
            Err(Failure::Denied(why)) => assert!(why.contains("internal address"), "{why}"),
            other => panic!("expected a denial, got {other:?}"),
        }
        assert!(
            server.requests().is_empty(),
            "no request reached the server"
        );
    });
}

#[test]
fn a_spinning_plugin_delays_no_other_call() {
    let dir = scratch("isolation");
    let rt = runtime();
    let tokio = tokio();
    let spinner = rt
        .load(&hostile("loop", &[], budget(1500)), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = actuator(shipped("record"));
    config.settings = settings(&[("path", "/out/d.jsonl")]);
    config.files = vec![FileGrant {
        host: dir.to_path_buf(),
        guest: "/out".into(),
        write: true,
    }];
    let recorder = rt
        .load(&config, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    tokio.block_on(async {
        // Two spinners: as many as there are worker threads.
        let spin1 = tokio::spawn({
            let s = spinner.clone();
            async move { s.apply(&request("s1", "a", 1, 2)).await.0 }
        });
        let spin2 = tokio::spawn({
            let s = spinner.clone();
            async move { s.apply(&request("s2", "b", 1, 2)).await.0 }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut slowest = Duration::ZERO;
        for i in 0..20 {
            let started = Instant::now();
            recorder
                .apply(&request(&format!("r{i}"), &format!("t{i}"), 1, 2))
                .await
                .0
                .unwrap_or_else(|e| panic!("{e}"));
            slowest = slowest.max(started.elapsed());
        }
        assert!(
            slowest < Duration::from_millis(500),
            "a call took {slowest:?} while plugins spun"
        );
        assert!(matches!(spin1.await.ok(), Some(Err(Failure::Timeout(_)))));
        assert!(matches!(spin2.await.ok(), Some(Err(Failure::Timeout(_)))));
    });
}

#[test]
fn one_decision_in_flight_per_target() {
    let rt = runtime();
    let spinner = rt
        .load(&hostile("loop", &[], budget(600)), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    tokio().block_on(async {
        let first = tokio::spawn({
            let s = spinner.clone();
            async move { s.apply(&request("a", "same", 1, 2)).await.0 }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(
            spinner.apply(&request("b", "same", 1, 3)).await.0,
            Err(Failure::Busy(_))
        ));
        let _ = first.await;
        // Once the first is done, the target is free again.
        assert!(matches!(
            spinner.apply(&request("c", "same", 1, 3)).await.0,
            Err(Failure::Timeout(_))
        ));
    });
}

#[test]
fn more_calls_at_once_than_the_pool_has_instances_wait_instead_of_failing() {
    // 10,000 policies tick at the same aligned second: their observe calls must queue
    // for the 64 pooled instances, not fail.
    let rt = runtime();
    let trivial = rt
        .load(
            &actuator(plugins().1.join("policyctl_trivial.wasm")),
            Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let results = tokio().block_on(futures::future::join_all((0..500).map(|i| {
        let a = trivial.clone();
        async move {
            a.apply(&request(&format!("d{i}"), &format!("t{i}"), 1, 2))
                .await
                .0
        }
    })));
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 500 failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
}

#[test]
fn a_file_that_is_not_an_actuator_is_refused_at_load() {
    let dir = scratch("not-a-plugin");
    let bogus = dir.join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm not really").unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime();
    assert!(matches!(
        rt.load(&actuator(bogus), Path::new(".")),
        Err(Failure::Load(_))
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(["plugin", "inspect"])
        .arg(shipped("webhook"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("name:         webhook"),
        "{text}"
    );
}

#[test]
fn actuate_drives_one_actuator_by_hand() {
    let dir = scratch("cli");
    std::fs::create_dir_all(dir.join("out")).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "(actuators: [(name: \"audit\", plugin: \"{}\", settings: {{\"path\": \"/out/d.jsonl\"}}, files: [(host: \"out\", guest: \"/out\", write: true)])])",
        shipped("record").display()
    );
    std::fs::write(dir.join("service.ron"), config).unwrap_or_else(|e| panic!("{e}"));
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_policyctl"))
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "actuate",
        "--config",
        "service.ron",
        "--actuator",
        "audit",
        "--target",
        "web",
        "--replicas",
        "5",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("applied 0 -> 5 on web: recorded in /out/d.jsonl (1 attempt)"),
        "{out}"
    );
    let (code, out, _) = run(&[
        "actuate",
        "--config",
        "service.ron",
        "--actuator",
        "audit",
        "--target",
        "web",
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("observed web: 5 replicas"), "{out}");
    let (code, _, err) = run(&[
        "actuate",
        "--config",
        "service.ron",
        "--actuator",
        "nope",
        "--target",
        "web",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no actuator `nope`"), "{err}");
}

#[test]
fn compiled_components_are_cached_on_disk_and_a_bad_cache_entry_is_recompiled() {
    // Its own cache: `runtime()` shares `policyctl-test-cache` with every other test.
    let cache = scratch("component-cache");
    let rt = Runtime::new(Some(cache.to_path_buf())).unwrap_or_else(|e| panic!("{e}"));
    rt.load(&actuator(shipped("record")), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one compiled component in the cache: {entries:?}"
    );
    // A damaged entry is not trusted: the component is compiled again.
    std::fs::write(&entries[0], b"garbage").unwrap_or_else(|e| panic!("{e}"));
    let a = rt
        .load(&actuator(shipped("record")), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        tokio().block_on(a.info()).0.map(|i| i.name),
        Ok("record".to_string())
    );
}

/// The walkthrough of docs/plugins.md, taken from the page itself: its Cargo.toml,
/// lib.rs and configuration build, inspect and run as the page says.
#[test]
fn the_plugin_guide_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide =
        std::fs::read_to_string(root.join("docs/plugins.md")).unwrap_or_else(|e| panic!("{e}"));
    let block = |after: &str, lang: &str| -> String {
        let start = guide
            .find(after)
            .unwrap_or_else(|| panic!("no `{after}` in the guide"));
        let rest = &guide[start..];
        let open = rest
            .find(&format!("```{lang}\n"))
            .unwrap_or_else(|| panic!("no {lang} block after `{after}`"))
            + lang.len()
            + 4;
        let close = rest[open..].find("```").unwrap_or_default();
        rest[open..open + close].to_string()
    };
    let dir = scratch("guide");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(plugins.join("hello/src")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        plugins.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"hello\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        plugins.join("hello/Cargo.toml"),
        block("`Cargo.toml`:", "toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        plugins.join("hello/src/lib.rs"),
        block("Then `src/lib.rs`:", "rust"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("hello.ron"), block("`hello.ron`:", "ron"))
        .unwrap_or_else(|e| panic!("{e}"));
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success());
    };
    copy(&root.join("plugins/wit"), &plugins);
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
            "plugins/Cargo.toml",
            "-p",
            "policyctl-hello",
        ])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("plugins/target"))
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "the guide's plugin does not build");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_policyctl"))
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let inspected = run(&[
        "plugin",
        "inspect",
        "plugins/target/wasm32-wasip2/release/policyctl_hello.wasm",
    ]);
    assert!(inspected.contains("name:         hello"), "{inspected}");
    let applied = run(&[
        "actuate",
        "--config",
        "hello.ron",
        "--actuator",
        "hello",
        "--target",
        "web",
        "--replicas",
        "4",
    ]);
    assert!(
        applied.contains("applied 0 -> 4 on web: bonjour, web (1 attempt)"),
        "{applied}"
    );
}

/// HTTPS to a server whose certificate comes from a private CA (as a cluster's API
/// server has): refused by default, accepted once the CA is in `tls_ca_files`. The
/// connection goes to the address the host vetted.
#[test]
fn https_trusts_the_ca_files_of_the_actuator_and_nothing_else_private() {
    use rcgen::{CertificateParams, KeyPair};
    use std::sync::Arc;

    let (ca_cert, issuer) = support::private_ca("policyctl test CA");
    let server_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .and_then(|p| p.signed_by(&server_key, &issuer))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch("tls");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap_or_else(|e| panic!("{e}"));

    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| {
        b.with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone()], key)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

    tokio().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else { return };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = r#"{"replicas": 7}"#;
                    let reply = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let rt = runtime();
        let base = format!("https://127.0.0.1:{port}");
        let mut config = actuator(shipped("webhook"));
        config.settings = settings(&[("url", &format!("{base}/scale")), ("observe_url", &format!("{base}/state/{{target}}"))]);
        config.allow_http = vec![base];
        let untrusting = rt.load(&config, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        match untrusting.observe("web").await.0 {
            Err(Failure::Unavailable(why)) => assert!(why.contains("transport"), "{why}"),
            other => panic!("a private CA must not be trusted by default: {other:?}"),
        }
        config.tls_ca_files = vec![ca_file.clone()];
        let trusting = rt.load(&config, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(trusting.observe("web").await.0.map(|o| o.replicas), Ok(7));
    });
}

#[test]
fn the_example_actuators_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    plugins();
    let text = std::fs::read_to_string(root.join("examples/actuators.ron"))
        .unwrap_or_else(|e| panic!("{e}"));
    let file: policyctl::actuate::ActuatorsFile =
        ron::from_str(&text).unwrap_or_else(|e| panic!("examples/actuators.ron: {e}"));
    let names: Vec<&str> = file.actuators.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["audit", "workers", "hooks", "k8s"]);
    let rt = runtime();
    for config in &file.actuators {
        rt.load(config, &root.join("examples"))
            .unwrap_or_else(|e| panic!("actuator `{}`: {e}", config.name));
    }
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn host_side_resources_are_bounded_per_call() {
    let rt = runtime();
    let tokio = tokio();
    // Header maps kept by the host, outside the plugin's 64 MiB: before the limit, one
    // 5 s call drove the host to ~5 GB.
    let before = rss_kib();
    for (headers, limit) in [("2", "host_resources"), ("8", "header_bytes")] {
        let a = rt
            .load(
                &hostile("fields-flood", &[("headers", headers)], budget(5000)),
                Path::new("."),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let (result, _) = tokio.block_on(a.apply(&request("f", "t", 1, 2)));
        match &result {
            Err(Failure::ResourceLimit(why)) => assert!(why.contains(limit), "{why}"),
            other => panic!("expected a resource limit on {limit}, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the limit was reached late"
        );
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 200 * 1024, "the host grew by {grown} KiB");

    // An 8 MB error message is cut, and says so.
    let a = rt
        .load(&hostile("huge-error", &[], budget(5000)), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    match tokio.block_on(a.apply(&request("e", "t", 1, 2))).0 {
        Err(Failure::Unavailable(m)) => {
            assert!(
                m.len() <= Limits::default().message_bytes + 64,
                "{} bytes",
                m.len()
            );
            assert!(m.ends_with("more bytes cut)"), "{}", &m[m.len() - 40..]);
        }
        other => panic!("expected the plugin's error, got {other:?}"),
    }
}

#[test]
fn connections_per_call_are_capped() {
    let tokio = tokio();
    tokio.block_on(async {
        let server = Server::start(|_| Reply::json(200, "{}")).await;
        let url = format!("http://127.0.0.1:{}", server.port);
        let mut config = hostile("http-flood", &[("url", &format!("{url}/"))], budget(5000));
        config.allow_http = vec![url];
        let rt = runtime();
        let a = rt
            .load(&config, Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        match a.apply(&request("c", "t", 1, 2)).await.0 {
            Err(Failure::Denied(why)) => assert!(why.contains("http_requests"), "{why}"),
            other => panic!("expected a denial, got {other:?}"),
        }
        assert_eq!(
            server.requests().len(),
            Limits::default().http_requests as usize
        );
    });
}

#[test]
fn credentials_go_only_to_the_origin_and_path_they_were_configured_for() {
    let tokio = tokio();
    tokio.block_on(async {
        let server = Server::start(|_| Reply::json(200, "{}")).await;
        let dir = scratch("inject-exact");
        let secret = dir.join("token");
        std::fs::write(&secret, "s3cret").unwrap_or_else(|e| panic!("{e}"));
        let origin = format!("http://127.0.0.1:{}", server.port);
        let rt = runtime();
        let get = |path: &str, pattern: String| {
            let mut config = hostile(
                "http-not-granted",
                &[("url", &format!("{origin}{path}"))],
                budget(3000),
            );
            config.allow_http = vec![origin.clone()];
            config.inject_headers = vec![InjectHeader {
                url: pattern,
                header: "authorization".into(),
                value_from_file: secret.clone(),
            }];
            rt.load(&config, Path::new("."))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // The port as a string prefix of the real one: `:1808` against `:18080`.
        let shorter = format!("http://127.0.0.1:{}", server.port / 10);
        let _ = get("/x", shorter).apply(&request("i1", "t", 1, 2)).await;
        // A path as a string prefix of another: `/api` against `/api-evil`.
        let _ = get("/api-evil", format!("{origin}/api"))
            .apply(&request("i2", "t", 1, 2))
            .await;
        // The right origin and a path below the configured one: sent.
        let _ = get("/api/v1", format!("{origin}/api"))
            .apply(&request("i3", "t", 1, 2))
            .await;
        let seen: Vec<(String, Option<String>)> = server
            .requests()
            .iter()
            .map(|r| {
                (
                    r.path.clone(),
                    r.header("authorization").map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("/x".to_string(), None),
                ("/api-evil".to_string(), None),
                ("/api/v1".to_string(), Some("s3cret".to_string())),
            ]
        );
    });
}

#[test]
fn a_stuck_actuator_delays_only_its_own_calls() {
    // 70 calls of an actuator that spins to its budget: before per-actuator shares,
    // they held all 64 pooled instances and another actuator's call failed `busy`.
    let dir = scratch("starvation");
    let rt = runtime();
    let tokio = tokio();
    let stuck = rt
        .load(&hostile("loop", &[], budget(2000)), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = actuator(shipped("record"));
    config.settings = settings(&[("path", "/out/d.jsonl")]);
    config.files = vec![FileGrant {
        host: dir.to_path_buf(),
        guest: "/out".into(),
        write: true,
    }];
    let recorder = rt
        .load(&config, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    tokio.block_on(async {
        let spinning: Vec<_> = (0..70)
            .map(|i| {
                let s = stuck.clone();
                tokio::spawn(async move {
                    s.apply(&request(&format!("s{i}"), &format!("s{i}"), 1, 2))
                        .await
                        .0
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let result = recorder.apply(&request("r", "r", 1, 2)).await.0;
        assert!(result.is_ok(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            started.elapsed()
        );
        for s in spinning {
            let _ = s.await;
        }
    });
}

#[test]
fn a_granted_command_leaves_no_process_behind() {
    let dir = scratch("orphan");
    let script = dir.join("orphan.sh");
    let pidfile = dir.join("pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 60 &\necho $! > {}\necho started\n",
            pidfile.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = Command::new("chmod").arg("+x").arg(&script).status();
    let program = script.display().to_string();
    let mut config = hostile(
        "orphan",
        &[("program", &program), ("arg", "x")],
        budget(5000),
    );
    config.allow_commands = vec![AllowCommand {
        program: program.clone(),
        args: vec!["x".into()],
        args_prefix: None,
    }];
    let rt = runtime();
    let a = rt
        .load(&config, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let result = tokio().block_on(a.apply(&request("o", "t", 1, 2))).0;
    assert!(result.is_ok(), "{result:?}");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(!pid.is_empty());
    // Gone, or a zombie waiting for a reaper: never running.
    let alive = support::wait_until(5, || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        matches!(state, Some('Z') | None)
    });
    assert!(alive, "the command's child {pid} outlived the call");
}
