//! The dashboard in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver, `fantoccini`). Open the page, see a policy decide, open it, scale it
//! by hand with the form, and watch the count and the history change. Screenshots of
//! both views are written to `target/dashboard-*.png` to be looked at.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

mod support;
use support::{
    Serve, free_port, http, per_second_trace, record_config, scratch, wait_until, write,
};

/// chromedriver on 127.0.0.1, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver(port: u16) -> Driver {
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver (Debian's `chromium-driver`, installed by .ci/run) cannot run: {e}"
            )
        });
    let driver = Driver(child);
    assert!(
        wait_until(20, || http("GET", port, "/status", &[], "").0 == 200),
        "chromedriver did not start"
    );
    driver
}

fn shot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("dashboard-{name}.png"))
}

/// Poll the text of the first element matching `css` until `ok` holds (at most `secs`).
async fn wait_text(c: &Client, css: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if ok(&t) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("`{css}` never matched; last text: {last:?}");
}

#[test]
fn an_operator_sees_a_decision_and_scales_by_hand() {
    let dir = scratch("dashboard");
    let trace = per_second_trace("q", 600, |i| if i < 3 { "1" } else { "3" }.to_string());
    write(&dir.join("load.csv"), &trace);
    write(
        &dir.join("policies/q.scale"),
        "policy \"q\" {\n  target audit \"q\"\n  replicas 1..5\n  every 1s\n  metric q = load \"q\"\n  desired = q\n  stabilize down 0s\n}\n",
    );
    let port = free_port();
    let config = record_config(
        &dir,
        port,
        r#"(name: "load", kind: File(path: "load.csv"))"#,
        r#"override_tokens: [(name: "operator", token: "op-token")],"#,
    );
    let serve = Serve::start(&config, port);
    let driver_port = free_port();
    let _driver = chromedriver(driver_port);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100"]
            }),
        );
        let c = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();

        // The fleet shows the policy, and its count after its decision (1 -> 3).
        let row = r#"tr.policy[data-name="q"]"#;
        wait_text(&c, &format!("{row} td.count"), 30, |t| t == "3").await;
        let text = c.find(Locator::Css(row)).await.unwrap().text().await.unwrap();
        assert!(text.contains("1 → 3"), "the last decision is shown: {text}");

        // Open it: the chart and the explanation.
        c.find(Locator::Css(row)).await.unwrap().click().await.unwrap();
        c.wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css("#chart svg path"))
            .await
            .unwrap();
        wait_text(&c, "#explain", 15, |t| t.contains("desired = q")).await;
        std::fs::write(shot_path("policy"), c.screenshot().await.unwrap()).unwrap();

        // Scale by hand: outside the bounds is refused, inside is done.
        let replicas = c.find(Locator::Id("replicas")).await.unwrap();
        replicas.clear().await.unwrap();
        replicas.send_keys("9").await.unwrap();
        c.find(Locator::Id("reason")).await.unwrap().send_keys("traffic test").await.unwrap();
        c.find(Locator::Id("token")).await.unwrap().send_keys("op-token").await.unwrap();
        c.find(Locator::Id("scale-submit")).await.unwrap().click().await.unwrap();
        wait_text(&c, "#form-result", 10, |t| t.contains("422")).await;
        let replicas = c.find(Locator::Id("replicas")).await.unwrap();
        replicas.clear().await.unwrap();
        replicas.send_keys("4").await.unwrap();
        c.find(Locator::Id("scale-submit")).await.unwrap().click().await.unwrap();
        wait_text(&c, "#form-result", 10, |t| t.contains("done")).await;
        wait_text(&c, &format!("{row} td.count"), 30, |t| t == "4").await;
        let record = wait_text(&c, "#records-table tr.record.override_set", 30, |t| {
            t.contains("traffic test")
        })
        .await;
        assert!(record.contains("operator"), "the author is the token's name: {record}");
        // The page says what happens (the override), not what the policy alone would do.
        let verdict = wait_text(&c, "#explain", 15, |t| t.contains("manual override: 4 replicas")).await;
        assert!(verdict.contains("without it the policy would"), "{verdict}");
        std::fs::write(shot_path("override"), c.screenshot().await.unwrap()).unwrap();
        c.close().await.unwrap();
    });

    // What the page did is what the API says.
    let q = serve.policy("q");
    assert_eq!(q["override"]["replicas"], 4);
    assert_eq!(q["override"]["author"], "operator");
    assert_eq!(q["override"]["reason"], "traffic test");
}
