//! Shared by the integration tests: running the `policyctl` binary, scratch
//! directories, building the plugins from source, and a small real HTTP/1.1 server on
//! 127.0.0.1 whose answers a test scripts.
#![allow(dead_code)]

pub mod etcd;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// What one run of the `policyctl` binary gave.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

/// Run `policyctl` in `dir`, without colour.
pub fn policyctl(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run policyctl: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The repository root, where the tests' relative paths start.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Write a file, creating its folders.
pub fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A CSV trace with `header` (after `time`) and a row each second from
/// 2026-01-01T00:00:00Z: `row(i)` gives the cells of second `i`.
pub fn per_second_trace(header: &str, seconds: usize, row: impl Fn(usize) -> String) -> String {
    let mut text = format!("time,{header}\n");
    for i in 0..seconds {
        text.push_str(&format!(
            "2026-01-01T{:02}:{:02}:{:02}Z,{}\n",
            i / 3600,
            i / 60 % 60,
            i % 60,
            row(i)
        ));
    }
    text
}

/// `dir/serve.ron`: the given sources, one `record` actuator named `audit` appending to
/// `dir/out/d.jsonl`, the policies of `dir/policies`, the API on `port`, and `extra`
/// fields. Returns its path.
pub fn record_config(dir: &Path, port: u16, sources: &str, extra: &str) -> PathBuf {
    let (wasm, _) = plugins();
    let _ = std::fs::create_dir_all(dir.join("out"));
    let _ = std::fs::create_dir_all(dir.join("policies"));
    let path = dir.join("serve.ron");
    write(
        &path,
        &format!(
            r#"(
    sources: [{sources}],
    actuators: [(name: "audit", plugin: "{}", settings: {{ "path": "/out/d.jsonl" }}, files: [(host: "out", guest: "/out", write: true)])],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
    {extra}
)"#,
            wasm.join("policyctl_record.wasm").display()
        ),
    );
    path
}

/// A fresh, empty directory for one test of this process, removed when the test ends
/// well (kept after a failure, to look at).
pub fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("policyctl-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    Scratch(dir)
}

/// See [`scratch`].
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Build `plugins/` and `tests/plugins/` for wasm32-wasip2 (once per test binary), and
/// return the directory of each workspace's `.wasm` files.
pub fn plugins() -> (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            // So that a plain `cargo test` works on a fresh machine too (instant when
            // the target is installed already).
            let target = Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .status();
            assert!(
                target.is_ok_and(|s| s.success()),
                "cannot add the wasm32-wasip2 target with rustup"
            );
            let build = |manifest: &str| {
                let status = Command::new(env!("CARGO"))
                    .args([
                        "build",
                        "--release",
                        "--target",
                        "wasm32-wasip2",
                        "--manifest-path",
                        manifest,
                    ])
                    .current_dir(root)
                    .env_remove("RUSTFLAGS")
                    .env_remove("CARGO_TARGET_DIR")
                    .status()
                    .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
                assert!(status.success(), "building {manifest} failed");
            };
            build("plugins/Cargo.toml");
            build("tests/plugins/Cargo.toml");
            (
                root.join("plugins/target/wasm32-wasip2/release"),
                root.join("tests/plugins/target/wasm32-wasip2/release"),
            )
        })
        .clone()
}

/// A request as the test server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }
}

type Handler = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// A real HTTP/1.1 server on 127.0.0.1 (one request per connection), recording
/// what it received. It stops when the test's runtime does.
pub struct Server {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    pub async fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Server {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let header_end = loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or_default().split(' ');
                    let method = first.next().unwrap_or_default().to_string();
                    let path = first.next().unwrap_or_default().to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < header_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = buf[header_end..(header_end + length).min(buf.len())].to_vec();
                    let request = Received {
                        method,
                        path,
                        headers,
                        body,
                    };
                    let reply = handler(&request);
                    if let Ok(mut log) = log.lock() {
                        log.push(request);
                    }
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (n, v) in &reply.headers {
                        out.push_str(&format!("{n}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&reply.body);
                    let _ = socket.write_all(out.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Server { port, received }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A blocking HTTP/1.1 request to 127.0.0.1: (status, body). Status 0 when the
/// connection fails.
pub fn http(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies (axum's JSON is not chunked, but be safe): keep as is.
    (status, body)
}

/// A free TCP port on 127.0.0.1 (free when asked), from below the kernel's ephemeral
/// range. A port from `bind(…:0)` comes from that range, the one every outgoing
/// connection (to etcd, to Prometheus) also draws from: between the moment it is asked
/// for and the moment a child binds it, a connection could take it ("Address already in
/// use"). Below the range only the tests hand ports out, each once per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|l| l.parse::<u32>().ok())
        })
        .unwrap_or(32768);
    const FIRST: u32 = 10_000;
    if low > FIRST + 1_000 {
        let span = low - FIRST;
        // Each test process starts somewhere else in the span.
        let start = (std::process::id().wrapping_mul(7919)) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = FIRST + (start + n) % span;
            if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Wait until `check` is true, polling every 50 ms, at most `secs` seconds.
pub fn wait_until(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check()
}

/// A real Prometheus server (Debian's `prometheus` package) on a free 127.0.0.1
/// port with its own data directory. Killed when dropped.
pub struct Prometheus {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<std::process::Child>,
}

impl Prometheus {
    /// Start one; `scrape` is an exporter port scraped every second.
    pub fn start(dir: &Path, scrape: Option<u16>) -> Prometheus {
        let mut p = Prometheus {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        if let Some(port) = scrape {
            config.push_str(&format!(
                "  - job_name: test\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ));
        } else {
            config.push_str("  []\n");
            config = config.replace("scrape_configs:\n  []\n", "scrape_configs: []\n");
        }
        std::fs::write(dir.join("prometheus.yml"), config).unwrap_or_else(|e| panic!("{e}"));
        p.resume();
        p
    }

    /// Start (again) on the same port and data.
    pub fn resume(&mut self) {
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("prometheus.log"))
                    .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from),
            )
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus (apt-get install prometheus): {e}")
            });
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(60, || http("GET", port, "/-/ready", &[], "").0 == 200),
            "prometheus did not become ready; see {}",
            self.dir.join("prometheus.log").display()
        );
    }

    /// Stop it with SIGTERM, as an operator would, and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `policyctl serve` as a child process, logging to a file. Killed when dropped.
pub struct Serve {
    pub port: u16,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Serve {
    /// Start it on `config` (its `listen` must be `127.0.0.1:{port}`), wait for ready.
    pub fn start(config: &Path, port: u16) -> Serve {
        let log = config.with_extension(format!(
            "log.{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_policyctl"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(&log)
                    .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start policyctl serve: {e}"));
        let mut s = Serve { port, child, log };
        let ready = wait_until(60, || http("GET", port, "/readyz", &[], "").0 == 200);
        assert!(ready, "serve did not become ready:\n{}", s.logs());
        let _ = s.child.try_wait();
        s
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http("GET", self.port, path, &[], "")
    }

    /// A policy's view from `/v1/policies/NAME`.
    pub fn policy(&self, name: &str) -> serde_json::Value {
        let (_, body) = self.get(&format!("/v1/policies/{name}"));
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    /// SIGTERM, then wait: the exit code.
    pub fn terminate(self) -> Option<i32> {
        self.signal("-TERM")
    }

    /// Send a signal (`-TERM`, `-INT`), then wait: the exit code.
    pub fn signal(mut self, signal: &str) -> Option<i32> {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus on 127.0.0.1 whose TSDB holds `openmetrics` (written into blocks by
/// `promtool tsdb create-blocks-from openmetrics`).
pub fn backfilled(dir: &Path, openmetrics: &str) -> Prometheus {
    write(&dir.join("history.om"), openmetrics);
    let prom_dir = dir.join("prom");
    let _ = std::fs::create_dir_all(prom_dir.join("data"));
    let status = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.join("history.om"))
        .arg(prom_dir.join("data"))
        .stdout(std::process::Stdio::null())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "promtool failed");
    Prometheus::start(&prom_dir, None)
}

/// A private certificate authority for TLS tests (rcgen): its certificate, and the
/// issuer that signs leaf certificates with it.
pub fn private_ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
    (cert, Issuer::new(params, key))
}

/// A service built in-process from the library (not loaded yet: call
/// `policies::reload`) over `dir`: the `file` source `load` reading `dir/load.csv`
/// (in a loop), the `record` plugin as actuator `audit` writing to `dir/out`, every
/// decision dry-run, the policies under `dir/policies`, the state file in `dir`.
pub fn in_process_service(dir: &Path, record_wasm: &Path) -> Arc<policyctl::serve::Service> {
    use policyctl::serve::{Service, config};
    std::fs::create_dir_all(dir.join("out")).unwrap_or_else(|e| panic!("out: {e}"));
    let text = format!(
        r#"(
    sources: [(name: "load", kind: File(path: "load.csv", loop: true))],
    actuators: [(name: "audit", plugin: "{}", settings: {{ "path": "/out/d.jsonl" }}, files: [(host: "out", guest: "/out", write: true)])],
    policies: ["policies"],
    listen: "127.0.0.1:0",
    dry_run: true,
)"#,
        record_wasm.display()
    );
    let loaded = config::Loaded {
        config: config::parse(&text, 0).unwrap_or_else(|d| panic!("{}", d.message)),
        text,
        base: dir.to_path_buf(),
    };
    Service::new(loaded).unwrap_or_else(|e| panic!("{e}"))
}
