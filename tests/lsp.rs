//! `policyctl lsp` at the protocol level: a client speaking LSP to the server in this
//! process (over lsp-server's in-memory connection) and to the binary over stdio.
//! Neovim, a real client, drives it in tests/lsp_neovim.rs.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lsp_server::{Connection, Message, Notification, Request, RequestId, Response};
use policyctl::lsp::{self, Settings, text::uri_of};
use serde_json::{Value, json};

mod support;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A client of a server running on a thread of this process.
struct Client {
    conn: Connection,
    server: Option<std::thread::JoinHandle<Result<(), String>>>,
    next: i32,
    /// Notifications from the server, in order, not yet looked at.
    notifications: Vec<Notification>,
}

impl Client {
    fn start(root: &Path) -> Client {
        Client::with(root, Settings::default(), json!({}))
    }

    fn with(root: &Path, settings: Settings, capabilities: Value) -> Client {
        let (server, conn) = Connection::memory();
        let thread = std::thread::spawn(move || lsp::run(server, settings));
        let mut client = Client {
            conn,
            server: Some(thread),
            next: 0,
            notifications: Vec::new(),
        };
        let result = client.request(
            "initialize",
            json!({
                "processId": null,
                "rootUri": uri(root),
                "capabilities": capabilities,
            }),
        );
        assert!(result.is_ok(), "initialize failed: {result:?}");
        client.notify("initialized", json!({}));
        client
    }

    fn notify(&self, method: &str, params: Value) {
        self.conn
            .sender
            .send(Message::Notification(Notification::new(
                method.into(),
                params,
            )))
            .unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next += 1;
        let id = RequestId::from(self.next);
        self.conn
            .sender
            .send(Message::Request(Request::new(
                id.clone(),
                method.into(),
                params,
            )))
            .unwrap();
        loop {
            match self.conn.receiver.recv_timeout(TIMEOUT) {
                Ok(Message::Response(Response {
                    id: got,
                    response_result,
                })) if got == id => {
                    return response_result.map_err(|e| e.message);
                }
                Ok(Message::Notification(n)) => self.notifications.push(n),
                Ok(other) => panic!("unexpected message: {other:?}"),
                Err(e) => panic!("no answer to {method} within {TIMEOUT:?}: {e}"),
            }
        }
    }

    /// The next diagnostics published for a document.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        self.diagnostics_of(uri, None)
    }

    /// The diagnostics published for a document's version (older ones are dropped), or
    /// the next ones of any version.
    fn diagnostics_of(&mut self, uri: &str, version: Option<i32>) -> Vec<Value> {
        loop {
            let of_uri = |n: &Notification| {
                n.method == "textDocument/publishDiagnostics" && n.params["uri"] == uri
            };
            if let Some(version) = version {
                self.notifications.retain(|n| {
                    !of_uri(n) || n.params["version"].as_i64() >= Some(i64::from(version))
                });
            }
            if let Some(i) = self.notifications.iter().position(of_uri) {
                let n = self.notifications.remove(i);
                return n.params["diagnostics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
            }
            match self.conn.receiver.recv_timeout(TIMEOUT) {
                Ok(Message::Notification(n)) => self.notifications.push(n),
                Ok(other) => panic!("unexpected message: {other:?}"),
                Err(e) => panic!("no diagnostics for {uri} within {TIMEOUT:?}: {e}"),
            }
        }
    }

    fn open(&mut self, path: &Path, text: &str) -> String {
        let uri = uri(path);
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "scale", "version": 1, "text": text}}),
        );
        uri
    }

    fn change(&mut self, uri: &str, version: i32, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
    }

    fn at(
        &mut self,
        method: &str,
        uri: &str,
        text: &str,
        needle: &str,
        delta: usize,
    ) -> Result<Value, String> {
        let (line, character) = position(text, needle, delta);
        let mut params = json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}});
        if method == "textDocument/references" {
            params["context"] = json!({"includeDeclaration": true});
        }
        self.request(method, params)
    }

    fn stop(mut self) {
        let _ = self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let server = self.server.take().unwrap();
        assert_eq!(server.join().unwrap(), Ok(()));
    }
}

fn uri(path: &Path) -> String {
    uri_of(path).unwrap().as_str().to_string()
}

/// The 0-based line and UTF-16 column of `delta` characters into the first `needle`.
fn position(text: &str, needle: &str, delta: usize) -> (u32, u32) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` is not in the text"))
        + delta;
    let before = &text[..at];
    let line = before.matches('\n').count();
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .encode_utf16()
        .count();
    (line as u32, column as u32)
}

/// Apply LSP text edits (UTF-16 positions) to a text.
fn apply(text: &str, edits: &Value) -> String {
    let offset = |p: &Value| -> usize {
        let (line, character) = (
            p["line"].as_u64().unwrap() as usize,
            p["character"].as_u64().unwrap() as usize,
        );
        let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
        let mut units = 0;
        for (i, c) in text[start..].char_indices() {
            if units >= character || c == '\n' {
                return start + i;
            }
            units += c.len_utf16();
        }
        text.len()
    };
    let mut edits: Vec<(usize, usize, String)> = edits
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                offset(&e["range"]["start"]),
                offset(&e["range"]["end"]),
                e["newText"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (start, end, new) in edits {
        out.replace_range(start..end, &new);
    }
    out
}

const WEB: &str = r#"policy "web" {
  target k8s "shop/deployment/web"
  replicas 2..10
  metric cpu = prometheus "avg(rate(container_cpu_usage_seconds_total[2m]))"
  let busy = cpu * 2
  track busy at 70%
  when cpu > 600MiB for 5m scale up by 2
  schedule "business-hours" {
    on mon..fri from 08:00 to 18:00 in "Europe/Berlin"
    replicas at least 4
  }
}
"#;

#[test]
fn diagnostics_are_checks_own() {
    // Every error fixture: the same codes, messages and places as `check --format json`.
    let dir = support::scratch("lsp-diagnostics");
    let fixtures = support::root().join("tests/check/err");
    let mut client = Client::start(&dir);
    let mut compared = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "scale"))
    {
        let name = path.file_name().unwrap();
        // Each in a folder of its own: `check` and the server both see it alone.
        let own = dir.join(path.file_stem().unwrap());
        std::fs::create_dir_all(&own).unwrap();
        let copy = own.join(name);
        // An editor's text is UTF-8 by the protocol: the invalid-UTF-8 fixture has no
        // counterpart here.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        std::fs::write(&copy, &text).unwrap();
        let expected: Value = serde_json::from_str(
            &support::policyctl(
                &own,
                &[
                    "check",
                    "--format",
                    "json",
                    "--now",
                    "2026-06-01T00:00:00Z",
                    name.to_str().unwrap(),
                ],
            )
            .out,
        )
        .unwrap();
        let uri = client.open(&copy, &text);
        let got = client.diagnostics(&uri);
        let expected = expected["diagnostics"].as_array().unwrap();
        // The server's clock is now, not the fixture's: the past-schedule warning may differ.
        let comparable = |code: &str| code != "scale::past-schedule";
        let expected: Vec<_> = expected
            .iter()
            .filter(|d| comparable(d["code"].as_str().unwrap()))
            .collect();
        let got: Vec<_> = got
            .iter()
            .filter(|d| comparable(d["code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got.len(),
            expected.len(),
            "{}: {got:#?}\nvs {expected:#?}",
            name.display()
        );
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g["code"], e["code"], "{}", name.display());
            assert!(
                g["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(e["message"].as_str().unwrap()),
                "{}: {g} vs {e}",
                name.display()
            );
            if let Some(help) = e["help"].as_str() {
                assert!(
                    g["message"].as_str().unwrap().contains(help),
                    "{}: help missing from {g}",
                    name.display()
                );
            }
            let severity = if e["severity"] == "error" { 1 } else { 2 };
            assert_eq!(g["severity"], severity);
            assert_eq!(
                g["range"]["start"]["line"],
                e["line"].as_u64().unwrap() - 1,
                "{}: {g}",
                name.display()
            );
            assert_eq!(
                g["range"]["start"]["character"],
                e["column"].as_u64().unwrap() - 1,
                "{}: {g}",
                name.display()
            );
            assert_eq!(
                g["range"]["end"]["line"],
                e["end_line"].as_u64().unwrap() - 1,
                "{}: {g}",
                name.display()
            );
            compared += 1;
        }
        client.notify(
            "textDocument/didClose",
            json!({"textDocument": {"uri": uri}}),
        );
        assert!(
            client.diagnostics(&uri).is_empty(),
            "closing clears a document's diagnostics"
        );
    }
    assert!(compared >= 50, "only {compared} diagnostics compared");
    client.stop();
}

#[test]
fn the_configuration_and_the_files_beside_are_checked_too() {
    let dir = support::scratch("lsp-config");
    support::write(
        &dir.join("policyctl.ron"),
        r#"(
    sources: [(name: "prom", kind: Prometheus(url: "http://127.0.0.1:9"))],
    actuators: [(name: "k8s", plugin: "k8s.wasm")],
    policies: ["policies"],
)"#,
    );
    let other = r#"policy "web" {
  target k8s "a/deployment/b"
  replicas 1..2
  desired = 1
}
"#;
    support::write(&dir.join("policies/a.scale"), other);
    let text = r#"policy "web" {
  target kube "x/deployment/y"
  replicas 1..3
  metric cpu = prometheus "up"
  track cpu at 50%
}
"#;
    let path = dir.join("policies/b.scale");
    support::write(&path, text);
    let mut client = Client::start(&dir);
    let uri = client.open(&path, text);
    let diagnostics = client.diagnostics(&uri);
    let codes: Vec<&str> = diagnostics
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    // As in `check`, a policy defined twice is reported as that alone.
    assert_eq!(codes, ["scale::duplicate-policy"], "{diagnostics:#?}");
    // The duplicate points at the first definition, in the other file.
    let related = &diagnostics[0]["relatedInformation"][0]["location"];
    assert_eq!(
        related["uri"],
        uri_of(&std::fs::canonicalize(dir.join("policies/a.scale")).unwrap())
            .unwrap()
            .as_str()
    );
    assert_eq!(related["range"]["start"]["line"], 0);
    let renamed = text.replace("policy \"web\"", "policy \"api\"");
    client.change(&uri, 2, &renamed);
    let diagnostics = client.diagnostics(&uri);
    let codes: Vec<&str> = diagnostics
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["scale::unknown-actuator", "scale::unknown-source"],
        "{diagnostics:#?}"
    );
    assert!(
        diagnostics[0]["message"]
            .as_str()
            .unwrap()
            .contains("help: declared actuators: k8s"),
        "{}",
        diagnostics[0]
    );
    assert!(
        diagnostics[1]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `prom`"),
        "{}",
        diagnostics[1]
    );
    // The configuration's names complete.
    let completion = client
        .at("textDocument/completion", &uri, text, "kube", 0)
        .unwrap();
    let labels: Vec<&str> = completion
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["k8s"]);
    let fixed = renamed.replace("kube", "k8s").replace("prometheus", "prom");
    client.change(&uri, 3, &fixed);
    assert!(client.diagnostics(&uri).is_empty());
    client.stop();
}

#[test]
fn edits_update_diagnostics_and_the_server_survives_every_prefix() {
    let dir = support::scratch("lsp-typing");
    let path = dir.join("web.scale");
    let mut client = Client::start(&dir);
    let uri = client.open(&path, "");
    assert!(client.diagnostics(&uri).is_empty());
    // Type WEB one character at a time, asking for everything on the way.
    let mut version = 1;
    for (end, _) in WEB.char_indices().step_by(3).chain([(WEB.len(), ' ')]) {
        version += 1;
        let typed = &WEB[..end];
        client.change(&uri, version, typed);
        let (line, character) = position(typed, typed, typed.len());
        let here = json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}});
        for method in [
            "textDocument/hover",
            "textDocument/completion",
            "textDocument/definition",
            "textDocument/prepareRename",
        ] {
            // prepareRename may refuse (no name there); the others answer.
            let answer = client.request(method, here.clone());
            assert!(
                answer.is_ok() || method == "textDocument/prepareRename",
                "{method} at {end}: {answer:?}"
            );
        }
        let mut references = here.clone();
        references["context"] = json!({"includeDeclaration": true});
        client
            .request("textDocument/references", references)
            .unwrap();
        client
            .request(
                "textDocument/documentSymbol",
                json!({"textDocument": {"uri": uri}}),
            )
            .unwrap();
        client.request("textDocument/formatting", json!({"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": true}})).unwrap();
        client
            .request(
                "textDocument/codeLens",
                json!({"textDocument": {"uri": uri}}),
            )
            .unwrap();
    }
    let diagnostics = client.diagnostics_of(&uri, Some(version));
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    // Break one statement: only it is reported, and the rest still answers.
    let broken = WEB.replace("replicas 2..10", "replicas 2..");
    client.change(&uri, version + 1, &broken);
    let diagnostics = client.diagnostics_of(&uri, Some(version + 1));
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(diagnostics[0]["code"], "scale::syntax");
    assert_eq!(diagnostics[0]["range"]["start"]["line"], 2);
    let hover = client
        .at("textDocument/hover", &uri, &broken, "600MiB", 1)
        .unwrap();
    assert_eq!(hover["contents"]["value"], "`600MiB` = 629,145,600 bytes");
    client.stop();
}

#[test]
fn hover_explains_keywords_literals_names_zones_and_schedules() {
    let dir = support::scratch("lsp-hover");
    let path = dir.join("web.scale");
    let mut client = Client::start(&dir);
    let uri = client.open(&path, WEB);
    assert!(client.diagnostics(&uri).is_empty());
    let mut hover = |needle: &str, delta: usize| -> String {
        let h = client
            .at("textDocument/hover", &uri, WEB, needle, delta)
            .unwrap();
        h["contents"]["value"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(hover("70%", 0), "`70%` = 0.7 (a ratio)");
    assert_eq!(hover("600MiB", 3), "`600MiB` = 629,145,600 bytes");
    assert_eq!(hover("5m scale", 1), "`5m` = 300 seconds");
    assert!(
        hover("track", 1).starts_with("`track EXPR at T` proposes"),
        "{}",
        hover("track", 1)
    );
    assert!(
        hover("  replicas", 0).is_empty(),
        "blank space has no hover"
    );
    let metric = hover("cpu * 2", 1);
    assert!(
        metric.contains("**metric** `cpu` from source `prometheus`")
            && metric.contains("container_cpu_usage_seconds_total"),
        "{metric}"
    );
    assert!(hover("busy at", 0).contains("**let** `busy` = `cpu * 2`"));
    assert!(hover("Europe/Berlin", 2).starts_with("**Europe/Berlin**: now "));
    // The schedule's next windows, in its zone and in UTC: 08:00 Berlin is 06:00 or
    // 07:00 UTC.
    let schedule = hover("business-hours", 1);
    assert!(
        schedule.starts_with("**schedule** `business-hours`: next windows"),
        "{schedule}"
    );
    assert_eq!(schedule.matches("Europe/Berlin").count(), 3, "{schedule}");
    assert_eq!(schedule.matches(" UTC").count(), 3, "{schedule}");
    assert!(
        schedule.contains("08:00 → ")
            && (schedule.contains("06:00 → ") || schedule.contains("07:00 → ")),
        "{schedule}"
    );
    assert!(
        !schedule.contains("Sat") && !schedule.contains("Sun"),
        "{schedule}"
    );
    client.stop();
}

#[test]
fn completion_offers_what_may_stand_there() {
    let dir = support::scratch("lsp-completion");
    let path = dir.join("web.scale");
    let mut client = Client::start(&dir);
    let text = "policy \"web\" {\n  metric cpu = prometheus \"up\"\n  let x = 1\n  timezone \"America/New_\"\n  every 15\n  when c\n}\n";
    let uri = client.open(&path, text);
    client.diagnostics(&uri);
    let mut labels = |needle: &str, delta: usize| -> Vec<String> {
        let items = client
            .at("textDocument/completion", &uri, text, needle, delta)
            .unwrap();
        items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(labels("America/New_", 12), ["America/New_York"]);
    let units = labels("15\n", 2);
    assert!(
        units.contains(&"15s".to_string())
            && units.contains(&"15m".to_string())
            && units.contains(&"15MiB".to_string()),
        "{units:?}"
    );
    let expr = labels("when c", 6);
    for wanted in ["cpu", "x", "ceil", "clamp", "current", "for", "scale"] {
        assert!(
            expr.contains(&wanted.to_string()),
            "{wanted} missing from {expr:?}"
        );
    }
    let statements = labels("  every", 2);
    assert!(
        statements.contains(&"stabilize".to_string())
            && statements.contains(&"schedule".to_string()),
        "{statements:?}"
    );
    // Sources without a configuration: the conventional names.
    let sources = labels("prometheus", 0);
    assert_eq!(sources, ["prometheus", "host", "file"]);
    client.stop();
}

#[test]
fn definitions_references_renames_and_symbols() {
    let dir = support::scratch("lsp-names");
    let path = dir.join("web.scale");
    let mut client = Client::start(&dir);
    let uri = client.open(&path, WEB);
    client.diagnostics(&uri);
    let definition = client
        .at("textDocument/definition", &uri, WEB, "cpu > 600MiB", 1)
        .unwrap();
    let (line, character) = position(WEB, "cpu =", 0);
    assert_eq!(
        definition["range"]["start"],
        json!({"line": line, "character": character})
    );
    let references = client
        .at("textDocument/references", &uri, WEB, "cpu =", 0)
        .unwrap();
    assert_eq!(references.as_array().unwrap().len(), 3);
    let rename = |client: &mut Client, name: &str| {
        let (line, character) = position(WEB, "busy at", 0);
        client.request(
            "textDocument/rename",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "newName": name}),
        )
    };
    let edit = rename(&mut client, "load").unwrap();
    let renamed = apply(WEB, &edit["changes"][&uri]);
    assert_eq!(renamed, WEB.replace("busy", "load"));
    assert!(
        rename(&mut client, "every")
            .unwrap_err()
            .contains("keyword")
    );
    assert!(
        rename(&mut client, "cpu")
            .unwrap_err()
            .contains("already defines `cpu`")
    );
    assert!(
        rename(&mut client, "Load")
            .unwrap_err()
            .contains("not a name")
    );
    let prepare = client.at("textDocument/prepareRename", &uri, WEB, "track", 0);
    assert!(prepare.unwrap_err().contains("only a `metric` or `let`"));

    let symbols = client
        .request(
            "textDocument/documentSymbol",
            json!({"textDocument": {"uri": uri}}),
        )
        .unwrap();
    assert_eq!(symbols[0]["name"], "web");
    assert_eq!(symbols[0]["detail"], "k8s \"shop/deployment/web\"");
    let children: Vec<&str> = symbols[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        children,
        [
            "cpu",
            "busy",
            "track busy at 70%",
            "when cpu > 600MiB for 5m scale up by 2",
            "business-hours"
        ]
    );
    client.stop();
}

#[test]
fn formatting_is_fmts_layout_and_range_formatting_touches_one_policy() {
    let dir = support::scratch("lsp-format");
    let path = dir.join("web.scale");
    let messy = "policy   \"a\"{\ntarget k8s \"x/deployment/a\"   # the target\n    replicas 1..2}\n\npolicy \"b\" {\n target k8s \"x/deployment/b\"\nreplicas    1..3\n}\n";
    let mut client = Client::start(&dir);
    let uri = client.open(&path, messy);
    client.diagnostics(&uri);
    let edits = client
        .request(
            "textDocument/formatting",
            json!({"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": true}}),
        )
        .unwrap();
    let formatted = apply(messy, &edits);
    std::fs::write(&path, messy).unwrap();
    let fmt = support::policyctl(&dir, &["fmt", "web.scale"]);
    assert_eq!(fmt.code, 0, "{}", fmt.err);
    assert_eq!(formatted, std::fs::read_to_string(&path).unwrap());
    // Only policy "b" is in the range: "a" keeps its layout.
    let (line, _) = position(messy, "replicas    1", 0);
    let edits = client
        .request(
            "textDocument/rangeFormatting",
            json!({"textDocument": {"uri": uri}, "range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 3}},
                   "options": {"tabSize": 2, "insertSpaces": true}}),
        )
        .unwrap();
    let partly = apply(messy, &edits);
    assert!(partly.starts_with("policy   \"a\"{"), "{partly}");
    assert!(
        partly.ends_with("policy \"b\" {\n  target k8s \"x/deployment/b\"\n  replicas 1..3\n}\n"),
        "{partly}"
    );
    // With a syntax error nothing is formatted.
    client.change(&uri, 2, "policy \"a\" { replicas 1.. }");
    let edits = client
        .request(
            "textDocument/formatting",
            json!({"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": true}}),
        )
        .unwrap();
    assert_eq!(edits, Value::Null);
    client.stop();
}

#[test]
fn a_code_lens_simulates_the_policy_on_its_trace() {
    let dir = support::scratch("lsp-simulate");
    let policy = support::root().join("policies/membrane-api.scale");
    let text = std::fs::read_to_string(&policy).unwrap();
    let path = dir.join("membrane-api.scale");
    std::fs::write(&path, &text).unwrap();
    std::fs::create_dir_all(dir.join("traces")).unwrap();
    let trace = dir.join("traces/membrane-api.csv");
    std::fs::copy(
        support::root().join("examples/traces/membrane-api.csv"),
        &trace,
    )
    .unwrap();
    let mut client = Client::start(&dir);
    let uri = client.open(&path, &text);
    client.diagnostics(&uri);
    let lenses = client
        .request(
            "textDocument/codeLens",
            json!({"textDocument": {"uri": uri}}),
        )
        .unwrap();
    let lens = &lenses[0]["command"];
    assert_eq!(lens["title"], "▶ simulate on traces/membrane-api.csv");
    let result = client
        .request(
            "workspace/executeCommand",
            json!({"command": lens["command"], "arguments": lens["arguments"]}),
        )
        .unwrap();
    // The same decisions as `policyctl simulate --json`.
    let cli = support::policyctl(
        &dir,
        &[
            "simulate",
            "membrane-api.scale",
            "--trace",
            "traces/membrane-api.csv",
            "--format",
            "json",
        ],
    );
    assert_eq!(cli.code, 0, "{}", cli.err);
    let expected: Vec<Value> = cli
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions = result["decisions"].as_array().unwrap();
    assert!(!decisions.is_empty());
    assert_eq!(decisions.len(), expected.len());
    for (got, want) in decisions.iter().zip(&expected) {
        for field in ["at", "from", "to", "reason"] {
            assert_eq!(got[field], want[field], "{field}");
        }
    }
    let shown = client
        .notifications
        .iter()
        .find(|n| n.method == "window/showMessage")
        .unwrap();
    assert!(
        shown.params["message"]
            .as_str()
            .unwrap()
            .starts_with("membrane-api on membrane-api.csv: ")
    );
    // A bad trace path is an error answer, not a dead server.
    let bad = client.request(
        "workspace/executeCommand",
        json!({"command": "policyctl.simulate", "arguments": [uri, "membrane-api", dir.join("nope.csv")]}),
    );
    assert!(bad.unwrap_err().contains("cannot read"));
    client.stop();
}

#[test]
fn a_panic_in_a_handler_answers_with_an_error_and_the_server_goes_on() {
    let dir = support::scratch("lsp-panic");
    let settings = Settings {
        panic_command: Some("boom".into()),
    };
    let mut client = Client::with(&dir, settings, json!({}));
    let uri = client.open(&dir.join("a.scale"), WEB);
    client.diagnostics(&uri);
    let failed = client.request(
        "workspace/executeCommand",
        json!({"command": "boom", "arguments": []}),
    );
    assert!(failed.unwrap_err().contains("a bug; the server goes on"));
    let hover = client
        .at("textDocument/hover", &uri, WEB, "70%", 0)
        .unwrap();
    assert_eq!(hover["contents"]["value"], "`70%` = 0.7 (a ratio)");
    // Malformed parameters are an error too.
    assert!(
        client
            .request("textDocument/hover", json!({"nonsense": 1}))
            .unwrap_err()
            .contains("malformed")
    );
    assert!(client.request("textDocument/hover", json!({"textDocument": {"uri": "file:///not/open.scale"}, "position": {"line": 0, "character": 0}})).unwrap_err().contains("not open"));
    client.stop();
}

#[test]
fn utf8_positions_when_the_client_prefers_them() {
    let dir = support::scratch("lsp-utf8");
    let mut client = Client::with(
        &dir,
        Settings::default(),
        json!({"general": {"positionEncodings": ["utf-8", "utf-16"]}}),
    );
    let text = "# ünïcödé 𝄞\npolicy \"a\" {\n  target k8s \"x/deployment/a\" # 𝄞\n  replicas 1..2\n  timezone \"Europe/Zürich\"\n}\n";
    let uri = client.open(&dir.join("a.scale"), text);
    let diagnostics: Vec<Value> = client
        .diagnostics(&uri)
        .into_iter()
        .filter(|d| d["severity"] == 1)
        .collect();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(
        diagnostics[0]["code"], "scale::unknown-zone",
        "{diagnostics:#?}"
    );
    // `"Europe/Zürich"` is 15 UTF-16 units and 16 bytes.
    assert_eq!(
        diagnostics[0]["range"]["start"],
        json!({"line": 4, "character": 11})
    );
    assert_eq!(
        diagnostics[0]["range"]["end"],
        json!({"line": 4, "character": 27})
    );
    client.stop();
    // In UTF-16 the clef is two units; in UTF-8 four bytes: hover finds `70%` either way.
    for caps in [
        json!({}),
        json!({"general": {"positionEncodings": ["utf-8"]}}),
    ] {
        let mut client = Client::with(&dir, Settings::default(), caps.clone());
        let text = "policy \"𝄞\" {\n  target k8s \"x/deployment/a\"\n  replicas 1..2\n  metric 𝄞 = x\n  track 1 at 70%\n}\n";
        let uri = client.open(&dir.join("b.scale"), text);
        client.diagnostics(&uri);
        let at = text.find("70%").unwrap();
        let line_start = text[..at].rfind('\n').unwrap() + 1;
        let column = if caps["general"].is_null() {
            text[line_start..at].encode_utf16().count()
        } else {
            at - line_start
        };
        let line = text[..at].matches('\n').count();
        let hover = client
            .request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": column}}))
            .unwrap();
        assert_eq!(
            hover["contents"]["value"], "`70%` = 0.7 (a ratio)",
            "{caps}"
        );
        client.stop();
    }
}

/// The binary over stdio: a whole session, then a client that vanishes mid-session.
#[test]
fn the_binary_speaks_lsp_on_stdio_and_survives_a_vanished_client() {
    let dir = support::scratch("lsp-stdio");
    let bin = env!("CARGO_BIN_EXE_policyctl");
    for vanish in [false, true] {
        let mut child = Command::new(bin)
            .args(["lsp", "--stdio"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let send = |stdin: &mut std::process::ChildStdin, m: Message| m.write(stdin).unwrap();
        send(
            &mut stdin,
            Message::Request(Request::new(
                1.into(),
                "initialize".into(),
                json!({"capabilities": {}, "rootUri": uri(&dir)}),
            )),
        );
        let init = Message::read(&mut stdout).unwrap().unwrap();
        let Message::Response(init) = init else {
            panic!("{init:?}")
        };
        assert_eq!(
            init.response_result.unwrap()["serverInfo"]["name"],
            "policyctl"
        );
        send(
            &mut stdin,
            Message::Notification(Notification::new("initialized".into(), json!({}))),
        );
        let file = uri(&dir.join("a.scale"));
        send(
            &mut stdin,
            Message::Notification(Notification::new(
                "textDocument/didOpen".into(),
                json!({"textDocument": {"uri": file, "languageId": "scale", "version": 1, "text": "policy \"a\" { replicas 1..2 }"}}),
            )),
        );
        let published = Message::read(&mut stdout).unwrap().unwrap();
        let Message::Notification(published) = published else {
            panic!("{published:?}")
        };
        assert_eq!(
            published.params["diagnostics"][0]["code"],
            "scale::missing-target"
        );
        if vanish {
            // The client dies: its end of both pipes closes with no `exit`.
            drop(stdin);
            drop(stdout);
        } else {
            send(
                &mut stdin,
                Message::Request(Request::new(2.into(), "shutdown".into(), Value::Null)),
            );
            let _ = Message::read(&mut stdout).unwrap();
            send(
                &mut stdin,
                Message::Notification(Notification::new("exit".into(), Value::Null)),
            );
        }
        let deadline = std::time::Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server outlived its client"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(status.code(), Some(0), "vanish={vanish}: {err}");
    }
}

/// Neovim's own LSP client (Debian's package; `.ci/run` installs it), started headless
/// on a file, with `policyctl lsp` as its server: what a person sees in the editor.
#[test]
fn neovim_shows_diagnostics_hovers_completes_formats_and_renames() {
    let nvim = ["/usr/bin/nvim", "/usr/local/bin/nvim"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("Neovim is not installed: `.ci/run` installs Debian's `neovim` package");
    let dir = support::scratch("lsp-neovim");
    let messy = r#"policy "web" {
target k8s "shop/deployment/web"
   replicas 2..10
  metric cpu = prometheus "avg(rate(container_cpu_usage_seconds_total[2m]))"
  let busy = cpu*2
  track busy at 70%
  when cpu > 600mib for 5m scale up by 2
  schedule "business-hours" {
    on mon..fri from 08:00 to 18:00 in "Europe/Berlin"
    replicas at least 4
  }
}
"#;
    let file = dir.join("web.scale");
    std::fs::write(&file, messy).unwrap();
    let query = |method: &str, needle: &str, delta: usize| {
        let (line, character) = position(messy, needle, delta);
        json!({"method": method, "line": line, "character": character})
    };
    let queries = json!([
        query("textDocument/hover", "70%", 1),
        query("textDocument/hover", "schedule", 2),
        query("textDocument/completion", "Europe/Berlin", 9),
        query("textDocument/completion", "5m scale", 1),
        query("textDocument/completion", "   replicas", 0),
        query("textDocument/definition", "cpu*2", 0),
    ]);
    let (line, character) = position(messy, "busy =", 0);
    let out = dir.join("out.json");
    let mut child = Command::new(nvim)
        .args([
            "--headless",
            "--clean",
            "-n",
            "-c",
            &format!(
                "luafile {}",
                support::root().join("tests/lsp/nvim.lua").display()
            ),
        ])
        .env("POLICYCTL", env!("CARGO_BIN_EXE_policyctl"))
        .env("FILE", &file)
        .env("QUERIES", queries.to_string())
        .env(
            "RENAME",
            json!({"line": line, "character": character, "name": "load"}).to_string(),
        )
        .env("OUT", &out)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("Neovim did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(got["errors"], json!([]), "{got:#}");

    // The diagnostic, where `check` puts it, with its help.
    let diagnostics = got["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{got:#}");
    let d = &diagnostics[0];
    let (line, column) = position(messy, "mib", 0);
    assert_eq!(
        (d["lnum"].as_u64(), d["col"].as_u64()),
        (Some(u64::from(line)), Some(u64::from(column))),
        "{d}"
    );
    assert_eq!(d["code"], "scale::unknown-unit");
    assert_eq!(d["source"], "policyctl");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `MiB`?"),
        "{d}"
    );

    let answers = got["answers"].as_array().unwrap();
    assert_eq!(answers[0]["hover"], "`70%` = 0.7 (a ratio)");
    assert!(
        answers[1]["hover"]
            .as_str()
            .unwrap()
            .starts_with("`schedule \"NAME\" { windows… effect }`"),
        "{}",
        answers[1]
    );
    let labels = |i: usize| -> Vec<String> {
        answers[i]["labels"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", answers[i]))
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        labels(2).contains(&"Europe/Berlin".to_string()),
        "{:?}",
        labels(2)
    );
    assert!(
        labels(2)
            .iter()
            .all(|z| z.to_lowercase().contains("europe/be")),
        "{:?}",
        labels(2)
    );
    assert!(
        labels(3).contains(&"5ms".to_string()) && labels(3).contains(&"5h".to_string()),
        "{:?}",
        labels(3)
    );
    assert!(
        labels(4).contains(&"cooldown".to_string()),
        "{:?}",
        labels(4)
    );
    let (line, _) = position(messy, "metric cpu", 0);
    assert_eq!(
        answers[5]["result"]["range"]["start"]["line"], line,
        "{}",
        answers[5]
    );

    // The buffer after formatting is what `policyctl fmt` writes.
    let fmt = support::policyctl(&dir, &["fmt", "web.scale"]);
    assert_eq!(fmt.code, 0, "{}", fmt.err);
    let formatted = std::fs::read_to_string(&file).unwrap();
    assert_ne!(formatted, messy);
    assert_eq!(got["formatted"], formatted.as_str());
    // … and after renaming `busy`, every use follows.
    assert_eq!(got["renamed"], formatted.replace("busy", "load").as_str());
}

/// Incremental changes (what Neovim and VS Code send): ranges in UTF-16 applied to the
/// server's copy, which later answers prove.
#[test]
fn incremental_changes_are_applied_where_they_say() {
    let dir = support::scratch("lsp-incremental");
    let mut client = Client::start(&dir);
    let text =
        "policy \"é\" {\n  target k8s \"x/deployment/a\"\n  replicas 1..2\n  track 1 at 70%\n}\n";
    let uri = client.open(&dir.join("a.scale"), text);
    client.diagnostics(&uri);
    // Replace `70%` by `50%` and `1..2` by `1..20`, in two changes of one notification.
    let (l1, c1) = position(text, "70%", 0);
    let (l2, c2) = position(text, "..2", 3);
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": l1, "character": c1}, "end": {"line": l1, "character": c1 + 2}}, "text": "50"},
            {"range": {"start": {"line": l2, "character": c2}, "end": {"line": l2, "character": c2}}, "text": "0"},
        ]}),
    );
    let now = text.replace("70%", "50%").replace("1..2\n", "1..20\n");
    let hover = client
        .at("textDocument/hover", &uri, &now, "50%", 0)
        .unwrap();
    assert_eq!(hover["contents"]["value"], "`50%` = 0.5 (a ratio)");
    let hover = client
        .at("textDocument/hover", &uri, &now, "20", 1)
        .unwrap();
    assert_eq!(hover["contents"]["value"], "`20` = 20");
    client.stop();
}
