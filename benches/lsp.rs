//! `cargo bench --bench lsp`: the language server on a file of 200 policies (50 of
//! benches/check.rs's generated files in one), over lsp-server's in-memory connection,
//! as an editor would drive it. Goal (issue 12): diagnostics arrive within 50 ms of a
//! change. Measured first on its own (median and worst of 40 changes; the bench fails
//! past the goal), then by criterion with hover and completion beside it.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lsp_server::{Connection, Message, Notification, Request, RequestId};
use policyctl::lsp::{self, Settings, text::uri_of};
use serde_json::{Value, json};

// `common::service` builds its service with the tests' helper.
#[path = "../tests/support/mod.rs"]
mod support;

mod common;

const GOAL: Duration = Duration::from_millis(50);

struct Client {
    conn: Connection,
    next: i32,
    version: i32,
    uri: String,
    text: String,
}

impl Client {
    fn send(&self, m: Message) {
        self.conn.sender.send(m).unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = RequestId::from(self.next);
        self.send(Message::Request(Request::new(
            id.clone(),
            method.into(),
            params,
        )));
        loop {
            match self
                .conn
                .receiver
                .recv_timeout(Duration::from_secs(30))
                .unwrap()
            {
                Message::Response(r) if r.id == id => return r.response_result.unwrap(),
                _ => {}
            }
        }
    }

    /// Change one literal of the text and wait for the diagnostics of that version.
    fn change(&mut self) -> Duration {
        self.version += 1;
        let text = self.text.replacen(
            "replicas 2..10",
            &format!("replicas 2..{}", 10 + self.version % 7),
            1,
        );
        let started = Instant::now();
        self.send(Message::Notification(Notification::new(
            "textDocument/didChange".into(),
            json!({"textDocument": {"uri": self.uri, "version": self.version}, "contentChanges": [{"text": text}]}),
        )));
        loop {
            if let Message::Notification(n) = self
                .conn
                .receiver
                .recv_timeout(Duration::from_secs(30))
                .unwrap()
                && n.method == "textDocument/publishDiagnostics"
                && n.params["version"] == self.version
            {
                assert_eq!(n.params["diagnostics"], json!([]));
                return started.elapsed();
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("policyctl-bench-lsp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text: String = (0..50).map(common::file).collect();
    let (server, conn) = Connection::memory();
    let thread = std::thread::spawn(move || lsp::run(server, Settings::default()));
    let mut client = Client {
        conn,
        next: 0,
        version: 1,
        uri: uri_of(&dir.join("fleet.scale"))
            .unwrap()
            .as_str()
            .to_string(),
        text,
    };
    client.request(
        "initialize",
        json!({"capabilities": {}, "rootUri": uri_of(&dir).unwrap().as_str()}),
    );
    client.send(Message::Notification(Notification::new(
        "initialized".into(),
        json!({}),
    )));
    client.send(Message::Notification(Notification::new(
        "textDocument/didOpen".into(),
        json!({"textDocument": {"uri": client.uri, "languageId": "scale", "version": 1, "text": client.text}}),
    )));
    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": client.uri}}),
    );
    assert_eq!(symbols.as_array().unwrap().len(), 200);

    let mut times: Vec<Duration> = (0..40).map(|_| client.change()).collect();
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "diagnostics after a change, 200 policies: median {median:?}, worst {worst:?} (goal {GOAL:?})"
    );
    assert!(
        median <= GOAL,
        "diagnostics took {median:?} (median) after a change; the goal is {GOAL:?}"
    );

    let mut group = c.benchmark_group("lsp");
    group.sample_size(20);
    group.bench_function("diagnostics after a change, 200 policies", |b| {
        b.iter(|| client.change())
    });
    let hover =
        json!({"textDocument": {"uri": client.uri}, "position": {"line": 605, "character": 28}});
    group.bench_function("hover, 200 policies", |b| {
        b.iter(|| client.request("textDocument/hover", hover.clone()))
    });
    group.bench_function("completion, 200 policies", |b| {
        b.iter(|| client.request("textDocument/completion", hover.clone()))
    });
    group.finish();

    client.request("shutdown", Value::Null);
    client.send(Message::Notification(Notification::new(
        "exit".into(),
        Value::Null,
    )));
    thread.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
