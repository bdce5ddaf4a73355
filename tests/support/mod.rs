//! Shared by the integration tests: running the `policyctl` binary, scratch
//! directories, building the plugins from source, and a small real HTTP/1.1 server on
//! 127.0.0.1 whose answers a test scripts.
#![allow(dead_code)]

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

/// A fresh, empty directory for one test of this process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("policyctl-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
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
