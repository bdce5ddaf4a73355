//! API v1 of `policyctl serve` against its OpenAPI document (docs/openapi.json): every
//! route the service has is in the document, and every live response validates, with a
//! real JSON Schema validator (the `jsonschema` crate, draft 2020-12, which OpenAPI 3.1
//! uses), against the schema the document gives for it. Then what the API promises:
//! history, fleet-wide decisions that survive a restart, overrides inside the bounds
//! unless forced, with their author, and the event stream.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{
    Serve, free_port, http, per_second_trace, record_config, scratch, wait_until, write,
};

fn document() -> Value {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Validate `instance` against the 200 response schema of `GET path` (the document's
/// path template) or of another method and status.
fn validate(doc: &Value, template: &str, method: &str, status: &str, instance: &Value) {
    let schema = &doc["paths"][template][method]["responses"][status]["content"]["application/json"]
        ["schema"];
    assert!(
        schema.is_object(),
        "no JSON schema for {method} {template} {status}"
    );
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("the schema of {method} {template} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status} does not match docs/openapi.json:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(instance).unwrap()
    );
}

fn get(serve: &Serve, path: &str) -> Value {
    let (status, body) = serve.get(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Read the event stream until `wanted` appears, at most `secs` seconds; after the
/// event `last` when given, as a reconnecting `EventSource` asks.
fn stream_until(port: u16, last: Option<&str>, wanted: &str, secs: u64) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let last = last.map_or(String::new(), |id| format!("last-event-id: {id}\r\n"));
    s.write_all(
        format!(
            "GET /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n{last}\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(wanted) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn every_route_is_documented_and_every_response_matches_the_document() {
    let doc = document();
    let dir = scratch("api-v1");
    // The load rises from 1 to 3 after 3 s: one decision, 1 -> 3.
    let trace = per_second_trace("q,gone", 600, |i| {
        if i < 3 { "1," } else { "3," }.to_string()
    });
    write(&dir.join("load.csv"), &trace);
    write(
        &dir.join("policies/q.scale"),
        "policy \"q\" {\n  target audit \"q\"\n  replicas 1..5\n  every 1s\n  metric q = load \"q\"\n  desired = q\n  when q > 2 for 2s scale to 4\n  stabilize down 0s\n  schedule \"always\" {\n    on daily from 00:00 to 23:59 in \"UTC\"\n    replicas at least 1\n  }\n}\n",
    );
    // A policy whose metric is always missing: it holds, and says why.
    write(
        &dir.join("policies/held.scale"),
        "policy \"held\" {\n  target audit \"held\"\n  replicas 1..5\n  every 1s\n  metric gone = load \"gone\"\n  track gone per replica 2\n}\n",
    );
    let port = free_port();
    let config = record_config(
        &dir,
        port,
        r#"(name: "load", kind: File(path: "load.csv"))"#,
        r#"override_tokens: [(name: "alice", token: "alice-token"), (name: "ci", token: "ci-token")],"#,
    );
    let serve = Serve::start(&config, port);
    assert!(
        wait_until(30, || serve.policy("q")["last"]["current"] == 3),
        "{}\n{}",
        serve.policy("q"),
        serve.logs()
    );

    // The document names exactly the routes the service has.
    let documented: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/v1/policies",
        "/v1/policies/{name}",
        "/v1/policies/{name}/history",
        "/v1/policies/{name}/override",
        "/v1/decisions",
        "/v1/events",
        "/v1/files",
        "/v1/status",
    ];
    expected.sort_unstable();
    let mut documented_sorted = documented.clone();
    documented_sorted.sort_unstable();
    assert_eq!(documented_sorted, expected);
    for path in ["/", "/healthz", "/readyz", "/metrics"] {
        assert_eq!(serve.get(path).0, 200, "{path}");
    }
    // The document the service serves is the one in docs/.
    assert_eq!(get(&serve, "/v1/openapi.json"), doc);

    // Live responses against their schemas.
    let all = get(&serve, "/v1/policies");
    validate(&doc, "/v1/policies", "get", "200", &all);
    let q = get(&serve, "/v1/policies/q");
    validate(&doc, "/v1/policies/{name}", "get", "200", &q);
    let held = get(&serve, "/v1/policies/held");
    validate(&doc, "/v1/policies/{name}", "get", "200", &held);
    validate(&doc, "/v1/files", "get", "200", &get(&serve, "/v1/files"));
    let status = get(&serve, "/v1/status");
    validate(&doc, "/v1/status", "get", "200", &status);
    assert_eq!(
        (&status["coordination"], &status["leader"]),
        (&serde_json::json!("file"), &serde_json::json!(true))
    );
    let (status, body) = serve.get("/v1/policies/nope");
    assert_eq!(status, 404);
    validate(
        &doc,
        "/v1/policies/{name}",
        "get",
        "404",
        &serde_json::from_str(&body).unwrap(),
    );

    // One shape per concept, and what a UI needs without knowing Rust.
    assert_eq!(q["replicas"], serde_json::json!({ "min": 1, "max": 5 }));
    assert_eq!(q["every"]["seconds"], 1.0);
    assert_eq!(q["rules"][1]["text"], "when q > 2 for 2s scale to 4");
    let explanation = &q["last"]["explanation"];
    assert_eq!(explanation["schedules"], serde_json::json!(["always"]));
    // A `when` rule's operand is reported, not only `track`'s.
    assert_eq!(explanation["rules"][1]["reads"][0]["name"], "q");
    assert_eq!(explanation["rules"][1]["reads"][0]["value"], 3.0);
    assert_eq!(explanation["steps"][0]["step"], "recommendation");
    assert_eq!(
        held["last"]["explanation"]["rules"][0]["outcome"]["why"],
        "missing"
    );
    assert_eq!(
        held["last"]["explanation"]["steps"][1]["note"]["kind"],
        "hold"
    );

    // History: every tick, and the decision among the records.
    let history = get(&serve, "/v1/policies/q/history");
    validate(&doc, "/v1/policies/{name}/history", "get", "200", &history);
    let ticks = history["ticks"].as_array().unwrap();
    assert!(ticks.len() >= 3, "{history}");
    assert!(
        ticks
            .iter()
            .any(|t| t["decided"] == true && t["result"] == 3)
    );
    let first_decision = history["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "decision")
        .cloned()
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(
        (first_decision["from"].clone(), first_decision["to"].clone()),
        (1.into(), 3.into())
    );
    assert_eq!(first_decision["status"], "applied");
    // `since` narrows; a bad one is refused.
    let last_at = ticks.last().unwrap()["at"].as_str().unwrap().to_string();
    let narrowed = get(&serve, &format!("/v1/policies/q/history?since={last_at}"));
    assert!(narrowed["ticks"].as_array().unwrap().len() < ticks.len());
    let (status, body) = serve.get("/v1/decisions?since=yesterday");
    assert_eq!(status, 400);
    validate(
        &doc,
        "/v1/decisions",
        "get",
        "400",
        &serde_json::from_str(&body).unwrap(),
    );
    let decisions = get(&serve, "/v1/decisions");
    validate(&doc, "/v1/decisions", "get", "200", &decisions);

    // Overrides: inside the bounds unless forced; the author is the token's name.
    let path = "/v1/policies/q/override";
    const OVERRIDE: &str = "/v1/policies/{name}/override";
    let alice = [("authorization", "Bearer alice-token")];
    let (status, body) = http(
        "POST",
        port,
        path,
        &alice,
        r#"{"replicas": 9, "reason": "load test"}"#,
    );
    assert_eq!(status, 422, "{body}");
    validate(
        &doc,
        OVERRIDE,
        "post",
        "422",
        &serde_json::from_str(&body).unwrap(),
    );
    assert!(body.contains("force"), "{body}");
    let (status, body) = http(
        "POST",
        port,
        path,
        &alice,
        r#"{"replicas": 9, "reason": "load test", "force": true}"#,
    );
    assert_eq!(status, 200, "{body}");
    let set: Value = serde_json::from_str(&body).unwrap();
    validate(&doc, OVERRIDE, "post", "200", &set);
    assert_eq!(set["override"]["forced"], true);
    assert_eq!(set["override"]["author"], "alice");
    assert!(
        wait_until(10, || serve.policy("q")["last"]["current"] == 9),
        "{}",
        serve.logs()
    );
    let (status, body) = http(
        "DELETE",
        port,
        path,
        &[("authorization", "Bearer ci-token")],
        "",
    );
    assert_eq!(status, 200, "{body}");
    validate(
        &doc,
        OVERRIDE,
        "delete",
        "200",
        &serde_json::from_str(&body).unwrap(),
    );
    let records = get(&serve, "/v1/policies/q/history")["records"].clone();
    let set = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "override_set")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            set["author"].clone(),
            set["reason"].clone(),
            set["forced"].clone()
        ),
        ("alice".into(), "load test".into(), true.into())
    );
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "override_deleted" && r["author"] == "ci")
    );

    // The event stream carries ticks as they happen.
    let events = stream_until(port, None, "event: tick", 10);
    assert!(events.contains("text/event-stream"), "{events}");
    let data = events
        .lines()
        .skip_while(|l| *l != "event: tick")
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("{events}"));
    let tick: Value = serde_json::from_str(data).unwrap();
    assert!(tick["tick"]["at"].is_string(), "{tick}");

    // A client that reconnects with the id of the last event it saw gets the events
    // of the ticks it missed meanwhile, starting right after that one.
    let ids = |text: &str| -> Vec<u64> {
        text.lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|id| id.parse().unwrap())
            .collect()
    };
    let seen = *ids(&events)
        .last()
        .unwrap_or_else(|| panic!("no id: {events}"));
    std::thread::sleep(Duration::from_millis(2500));
    let again = stream_until(
        port,
        Some(&seen.to_string()),
        &format!("id: {}", seen + 2),
        10,
    );
    let replayed = ids(&again);
    assert_eq!(replayed.first(), Some(&(seen + 1)), "{again}");
    assert!(
        replayed.len() >= 2 && replayed.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks of the 2.5 s away, in order, none twice: {again}"
    );
    assert!(!again.contains("event: lagged"), "{again}");
    // An id from before this process: whatever is kept, and a `lagged` of unknown size.
    let old = stream_until(port, Some("1"), "event: tick", 10);
    assert!(
        old.contains("event: lagged\ndata: {\"missed\":null}"),
        "{old}"
    );

    // Missing data is logged when it starts, not at every tick.
    let logs = serve.logs();
    let starts = logs
        .lines()
        .filter(|l| l.contains("metrics: samples missing") && l.contains(r#""policy":"held""#))
        .count();
    assert_eq!(starts, 1, "{logs}");
    assert!(
        held["last"]["at"] != get(&serve, "/v1/policies/held")["last"]["at"],
        "the policy ticked on since"
    );

    // Decisions and override changes survive a restart.
    let before = get(&serve, "/v1/decisions")["records"]
        .as_array()
        .unwrap()
        .len();
    assert!(before >= 3);
    assert_eq!(serve.terminate(), Some(0));
    let serve = Serve::start(&config, port);
    let after = get(&serve, "/v1/decisions")["records"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        after >= before,
        "{before} records before the restart, {after} after"
    );
}
