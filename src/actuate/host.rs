//! What a plugin instance lives in: the store's data (WASI context with only the
//! granted preopens, the HTTP hooks, the resource limits), and the host side of the
//! `log`, `config` and `command` imports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::policyctl::actuator::{command, config, log, types};
use super::config::ActuatorConfig;
use super::http::HttpHooks;

/// One log line a plugin wrote during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

pub struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub hooks: HttpHooks,
    pub limits: StoreLimits,
    pub config: Arc<ActuatorConfig>,
    /// The settings as the plugin reads them.
    pub settings: Arc<BTreeMap<String, String>>,
    pub deadline: Instant,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let limits = &self.config.limits;
        if self.logs.len() >= limits.log_lines {
            self.logs_dropped += 1;
            return;
        }
        let mut message = message;
        if message.len() > limits.log_line_bytes {
            let mut cut = limits.log_line_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.logs.push(LogLine {
            level: level.to_string(),
            message,
        });
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.settings.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl command::Host for HostState {
    async fn run(
        &mut self,
        program: String,
        args: Vec<String>,
    ) -> Result<command::Output, command::CommandError> {
        if !super::grants::command_allowed(&self.config.allow_commands, &program, &args) {
            let why = format!("`{program}` with these arguments is not granted to this actuator");
            if let Ok(mut slot) = self.hooks.denied.lock() {
                *slot = Some(super::http::Denial(why.clone()));
            }
            return Err(command::CommandError::Denied(why));
        }
        let limits = &self.config.limits;
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = Duration::from_millis(limits.command_timeout_ms).min(remaining);
        run_command(&program, &args, timeout, limits.command_output_bytes).await
    }
}

/// Kills a command's whole process group when dropped: at the timeout, when the call
/// ends, and when the call itself is dropped (its budget ran out). A child that moved
/// to a group of its own (`setsid`) escapes this; docs/security.md says so.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals the process group the child
            // leads (it was started with process_group(0)); no memory is involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// Run a granted program: no shell, an empty environment, no stdin, output capped,
/// in a process group of its own that is killed, children and all, when the call
/// ends or times out.
async fn run_command(
    program: &str,
    args: &[String],
    timeout: Duration,
    cap: usize,
) -> Result<command::Output, command::CommandError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| command::CommandError::Failed(format!("cannot start `{program}`: {e}")))?;
    let _group = Group(child.id());
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(command::CommandError::Failed("no output pipes".into()));
    };
    // Keep the first `cap` bytes and drain the rest, so a chatty program never blocks
    // on a full pipe.
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut out = Vec::new();
        let _ = (&mut pipe).take(cap as u64).read_to_end(&mut out).await;
        let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
        out
    };
    let (out, err) = (
        tokio::spawn(read(Box::new(stdout))),
        tokio::spawn(read(Box::new(stderr))),
    );
    let work = async {
        let status = child.wait().await;
        // A program that left children behind (a daemon it started) may have handed
        // them its pipes: once it exits, take what output has come and stop waiting.
        let grace = Duration::from_millis(200);
        let out = tokio::time::timeout(grace, out)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let err = tokio::time::timeout(grace, err)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((stdout, stderr, Ok(status))) => Ok(command::Output {
            status: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }),
        Ok((_, _, Err(e))) => Err(command::CommandError::Failed(format!("`{program}`: {e}"))),
        // `kill_on_drop` ends the child when `work` is dropped here.
        Err(_) => Err(command::CommandError::Timeout),
    }
}
