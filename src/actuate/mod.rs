//! Actuators as sandboxed WebAssembly components. The only module that knows wasmtime.
//!
//! - One `Runtime` per process: the engine (pooling allocator, epoch interruption), a
//!   thread that ticks the epoch, and the on-disk cache of compiled components.
//! - One `Actuator` per configured actuator: its component pre-linked (`InstancePre`),
//!   its grants and limits.
//! - Every call (`info`, `observe`, `apply`) gets a fresh store and instance: nothing
//!   leaks between calls, and a trap poisons nothing. Memory is capped by
//!   `StoreLimits`, CPU by the epoch deadline, and the whole call, host calls
//!   included, by a wall-clock timeout.
//! - Failures are typed (`Failure`): a plugin's own permanent or transient error, or the
//!   sandbox's: trap, timeout, memory, stack overflow, a denied capability.

pub mod config;
pub mod grants;
mod host;
mod http;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable, ResourceTableError};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

pub use config::{ActuatorConfig, ActuatorsFile, Limits};
pub use host::LogLine;

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "actuator",
        imports: { "policyctl:actuator/command.run": async },
        exports: { default: async },
    });
}

use bindings::policyctl::actuator::types as wit;

/// How often the epoch advances: the granularity of CPU deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Instances that may exist at once in the pool (and so concurrent calls).
const POOL_INSTANCES: u32 = 64;
/// Descriptors kept out of plugins' reach: the state file, policy files, sockets of the
/// HTTP API and of metric sources always find one free.
const RESERVED_DESCRIPTORS: u64 = 256;

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub target_kinds: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Observation {
    pub replicas: u32,
    pub ready: bool,
}

/// A decision as the plugin receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The idempotency key: every attempt of this decision carries it.
    pub id: String,
    pub policy: String,
    pub target: String,
    pub from: u32,
    pub to: u32,
    pub reason: String,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub replicas: u32,
    pub message: String,
    /// Attempts made, the successful one included.
    pub attempts: u32,
}

/// Why a call failed. `is_transient` says whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    // The plugin's own errors, permanent.
    InvalidConfig(String),
    InvalidDecision(String),
    NotFound(String),
    Forbidden(String),
    Unsupported(String),
    // The plugin's own errors, transient.
    Conflict(String),
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    Unavailable(String),
    // The sandbox's.
    /// The call ran past its budget (CPU or wall clock).
    Timeout(Duration),
    /// The instance tried to grow its memory past the limit.
    MemoryLimit(u64),
    StackOverflow,
    /// The plugin trapped (a Rust plugin's panic is an `unreachable` trap).
    Trap(String),
    /// The plugin held more host-side resources than `host_resources`, or a set of
    /// headers larger than `header_bytes`.
    ResourceLimit(String),
    /// A capability the plugin used was not granted (and the plugin gave up on it).
    Denied(String),
    /// Another decision for this target is still in flight.
    Busy(String),
    /// The component does not match the WIT world, or cannot be loaded.
    Load(String),
}

impl Failure {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Failure::Conflict(_) | Failure::RateLimited { .. } | Failure::Unavailable(_)
        )
    }

    /// A short stable name, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::InvalidConfig(_) => "invalid-config",
            Failure::InvalidDecision(_) => "invalid-decision",
            Failure::NotFound(_) => "not-found",
            Failure::Forbidden(_) => "forbidden",
            Failure::Unsupported(_) => "unsupported",
            Failure::Conflict(_) => "conflict",
            Failure::RateLimited { .. } => "rate-limited",
            Failure::Unavailable(_) => "unavailable",
            Failure::Timeout(_) => "timeout",
            Failure::MemoryLimit(_) => "memory-limit",
            Failure::StackOverflow => "stack-overflow",
            Failure::Trap(_) => "trap",
            Failure::ResourceLimit(_) => "resource-limit",
            Failure::Denied(_) => "denied",
            Failure::Busy(_) => "busy",
            Failure::Load(_) => "load",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::InvalidConfig(m)
            | Failure::InvalidDecision(m)
            | Failure::NotFound(m)
            | Failure::Forbidden(m)
            | Failure::Unsupported(m)
            | Failure::Conflict(m)
            | Failure::Unavailable(m)
            | Failure::Trap(m)
            | Failure::ResourceLimit(m)
            | Failure::Denied(m)
            | Failure::Busy(m)
            | Failure::Load(m) => {
                write!(f, "{}: {m}", self.kind())
            }
            Failure::RateLimited {
                message,
                retry_after,
            } => match retry_after {
                Some(d) => write!(
                    f,
                    "rate-limited: {message} (retry after {} ms)",
                    d.as_millis()
                ),
                None => write!(f, "rate-limited: {message}"),
            },
            Failure::Timeout(d) => write!(
                f,
                "timeout: the call ran past its budget of {} ms",
                d.as_millis()
            ),
            Failure::MemoryLimit(mib) => {
                write!(f, "memory-limit: the plugin tried to grow past {mib} MiB")
            }
            Failure::StackOverflow => write!(f, "stack-overflow: the plugin overflowed its stack"),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// The plugin's own error, its text cut to `max` bytes: a plugin chooses what it
    /// returns, and an 8 MB message must not become an 8 MB log line every tick.
    fn from_plugin(e: wit::ActuationError, max: usize) -> Failure {
        let cut = |m: String| truncate(m, max);
        match Failure::from(e) {
            Failure::InvalidConfig(m) => Failure::InvalidConfig(cut(m)),
            Failure::InvalidDecision(m) => Failure::InvalidDecision(cut(m)),
            Failure::NotFound(m) => Failure::NotFound(cut(m)),
            Failure::Forbidden(m) => Failure::Forbidden(cut(m)),
            Failure::Unsupported(m) => Failure::Unsupported(cut(m)),
            Failure::Conflict(m) => Failure::Conflict(cut(m)),
            Failure::Unavailable(m) => Failure::Unavailable(cut(m)),
            Failure::RateLimited {
                message,
                retry_after,
            } => Failure::RateLimited {
                message: cut(message),
                retry_after,
            },
            other => other,
        }
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), saying how much was
/// left out.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("… ({} more bytes cut)", total - cut));
    text
}

impl From<wit::ActuationError> for Failure {
    fn from(e: wit::ActuationError) -> Self {
        match e {
            wit::ActuationError::InvalidConfig(m) => Failure::InvalidConfig(m),
            wit::ActuationError::InvalidDecision(m) => Failure::InvalidDecision(m),
            wit::ActuationError::NotFound(m) => Failure::NotFound(m),
            wit::ActuationError::Forbidden(m) => Failure::Forbidden(m),
            wit::ActuationError::Unsupported(m) => Failure::Unsupported(m),
            wit::ActuationError::Conflict(m) => Failure::Conflict(m),
            wit::ActuationError::RateLimited(r) => Failure::RateLimited {
                message: r.message,
                retry_after: r.retry_after_ms.map(Duration::from_millis),
            },
            wit::ActuationError::Unavailable(m) => Failure::Unavailable(m),
        }
    }
}

/// What one call produced besides its result: the plugin's log lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallLog {
    pub lines: Vec<LogLine>,
    pub dropped: usize,
    /// The last capability the host refused during the call, and why.
    pub denied: Option<String>,
}

/// A plugin that reports a refused capability as its own error still failed on the
/// capability: say so.
fn with_denial<T>(result: Result<T, Failure>, log: &CallLog) -> Result<T, Failure> {
    match (result, &log.denied) {
        (Err(f), Some(why))
            if !matches!(
                f,
                Failure::Timeout(_) | Failure::MemoryLimit(_) | Failure::StackOverflow
            ) =>
        {
            Err(Failure::Denied(format!("{why} ({f})")))
        }
        (r, _) => r,
    }
}

/// The engine and its epoch ticker. Dropping it stops the ticker.
pub struct Runtime {
    engine: Engine,
    cache_dir: PathBuf,
    stop: Arc<AtomicBool>,
    /// One permit per instance the pool holds: a call waits for a free instance rather
    /// than failing when many policies call plugins at the same instant.
    instances: Arc<tokio::sync::Semaphore>,
    /// One permit per descriptor plugins may hold in all: the process's limit less
    /// `RESERVED_DESCRIPTORS`. A call takes as many as it may open (`host_resources` +
    /// `http_requests`) before it starts.
    descriptors: Arc<tokio::sync::Semaphore>,
    descriptor_total: u32,
}

/// The soft limit on open descriptors of this process.
pub fn descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine with the pooling allocator and epoch interruption, compiled plugins
    /// cached under `cache_dir`.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime, Failure> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES);
        pool.total_core_instances(POOL_INSTANCES * 4);
        pool.total_memories(POOL_INSTANCES * 2);
        pool.total_tables(POOL_INSTANCES * 4);
        pool.max_memory_size(256 << 20);
        pool.max_core_instances_per_component(32);
        pool.max_memories_per_component(4);
        pool.max_tables_per_component(8);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(|e| Failure::Load(format!("cannot start the WebAssembly engine: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        // A plain thread, not a tokio task: it must tick while every worker is busy.
        let ticker = engine.weak();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("policyctl-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| Failure::Load(format!("cannot start the epoch thread: {e}")))?;
        let cache_dir = cache_dir.unwrap_or_else(|| std::env::temp_dir().join("policyctl-cache"));
        let descriptor_total = u32::try_from(
            descriptor_limit()
                .saturating_sub(RESERVED_DESCRIPTORS)
                .clamp(64, 1 << 20),
        )
        .unwrap_or(1 << 20);
        Ok(Runtime {
            engine,
            cache_dir,
            stop,
            instances: Arc::new(tokio::sync::Semaphore::new(POOL_INSTANCES as usize)),
            descriptors: Arc::new(tokio::sync::Semaphore::new(descriptor_total as usize)),
            descriptor_total,
        })
    }

    /// Compile a component, or load it from the cache when this exact file was compiled
    /// before by this exact engine.
    fn component(&self, path: &Path) -> Result<Component, Failure> {
        let bytes = crate::input::read_bytes(path, crate::input::caps::PLUGIN)
            .map_err(|e| Failure::Load(format!("cannot read `{}`: {e}", path.display())))?;
        let mut hasher = Sha256::new();
        hasher.update(&bytes);
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut compat);
        hasher.update(compat.finish().to_le_bytes());
        let key: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let cached = self.cache_dir.join(format!("{key}.cwasm"));
        if cached.exists() {
            // SAFETY: the file is one this process family wrote with `serialize` for an
            // engine of the same compatibility hash (part of its name), in a directory
            // the operator controls; wasmtime checks its header before use.
            if let Ok(component) = unsafe { Component::deserialize_file(&self.engine, &cached) } {
                return Ok(component);
            }
        }
        let component = Component::new(&self.engine, &bytes).map_err(|e| {
            Failure::Load(format!(
                "`{}` is not a valid component: {e}",
                path.display()
            ))
        })?;
        if let Ok(serialized) = component.serialize() {
            // Written through a temporary name and renamed: readers never see half a file.
            let _ = std::fs::create_dir_all(&self.cache_dir);
            let tmp = self
                .cache_dir
                .join(format!("{key}.{}.tmp", std::process::id()));
            if std::fs::write(&tmp, serialized).is_ok() {
                let _ = std::fs::rename(&tmp, &cached);
            }
        }
        Ok(component)
    }

    /// Load one configured actuator. `base` is the directory paths are relative to.
    pub fn load(&self, config: &ActuatorConfig, base: &Path) -> Result<Actuator, Failure> {
        let path = base.join(&config.plugin);
        let component = self.component(&path)?;
        let mut linker: Linker<host::HostState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Failure::Load(e.to_string()))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Failure::Load(e.to_string()))?;
        bindings::Actuator::add_to_linker::<_, HasSelf<host::HostState>>(&mut linker, |s| s)
            .map_err(|e| Failure::Load(e.to_string()))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            Failure::Load(format!(
                "`{}` imports what the host does not provide: {e}",
                path.display()
            ))
        })?;
        let pre = bindings::ActuatorPre::new(pre).map_err(|e| {
            Failure::Load(format!(
                "`{}` does not export the policyctl:actuator@0.1.0 world: {e}",
                path.display()
            ))
        })?;
        let grants = config
            .allow_http
            .iter()
            .map(|g| grants::HttpGrant::parse(g))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::InvalidConfig)?;
        let mut config = config.clone();
        for file in &mut config.files {
            file.host = base.join(&file.host);
        }
        for inject in &mut config.inject_headers {
            inject.value_from_file = base.join(&inject.value_from_file);
        }
        let ca_files: Vec<PathBuf> = config.tls_ca_files.iter().map(|f| base.join(f)).collect();
        let tls = http::tls_config(&ca_files).map_err(Failure::InvalidConfig)?;
        // No actuator may hold more than half the plugins' descriptors, whatever its
        // `concurrency`: a flood of one leaves room for every other.
        let per_call = config.limits.host_resources + config.limits.http_requests as usize;
        let fair = (self.descriptor_total as usize / 2 / per_call.max(1)).max(1);
        let share = Arc::new(tokio::sync::Semaphore::new(
            config.limits.concurrency.clamp(1, fair),
        ));
        Ok(Actuator {
            name: config.name.clone(),
            settings: Arc::new(config.settings.clone()),
            config: Arc::new(config),
            grants: Arc::new(grants),
            tls,
            pre,
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            instances: self.instances.clone(),
            descriptors: self.descriptors.clone(),
            descriptor_total: self.descriptor_total,
            share,
        })
    }
}

/// A loaded actuator, ready to call. Cheap to clone; clones share the in-flight set.
#[derive(Clone)]
pub struct Actuator {
    pub name: String,
    config: Arc<ActuatorConfig>,
    settings: Arc<BTreeMap<String, String>>,
    grants: Arc<Vec<grants::HttpGrant>>,
    tls: Arc<rustls::ClientConfig>,
    pre: bindings::ActuatorPre<host::HostState>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    instances: Arc<tokio::sync::Semaphore>,
    descriptors: Arc<tokio::sync::Semaphore>,
    descriptor_total: u32,
    /// This actuator's own share of calls (`limits.concurrency`).
    share: Arc<tokio::sync::Semaphore>,
}

/// Where the host notes the last capability it refused during a call.
type DenialSlot = Arc<Mutex<Option<http::Denial>>>;

/// Removes a target from the in-flight set when its decision is done.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    target: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.target);
        }
    }
}

impl Actuator {
    fn store(&self, deadline: Instant) -> Result<(Store<host::HostState>, DenialSlot), Failure> {
        let mut wasi = WasiCtxBuilder::new();
        // No sockets, no environment, no arguments: only what is granted below.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for file in &self.config.files {
            let perms = if file.write {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&file.host, &file.guest, perms)
                .map_err(|e| {
                    Failure::InvalidConfig(format!(
                        "files: cannot open `{}`: {e}",
                        file.host.display()
                    ))
                })?;
        }
        let denied = Arc::new(Mutex::new(None));
        let limits = &self.config.limits;
        let memory =
            usize::try_from(limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        // Host memory and descriptors a plugin can make the host hold are bounded per
        // call: entries in its resource table, and the size of each set of headers.
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.host_resources);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(limits.header_bytes);
        let state = host::HostState {
            wasi: wasi.build(),
            table,
            http,
            hooks: http::HttpHooks {
                grants: self.grants.clone(),
                tls: self.tls.clone(),
                inject: Arc::new(self.config.inject_headers.clone()),
                deadline,
                denied: denied.clone(),
                sent: 0,
                max_requests: limits.http_requests,
            },
            limits: StoreLimitsBuilder::new()
                .memory_size(memory)
                .instances(POOL_INSTANCES as usize)
                .trap_on_grow_failure(true)
                .build(),
            config: self.config.clone(),
            settings: self.settings.clone(),
            deadline,
            logs: Vec::new(),
            logs_dropped: 0,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        // Yield to the executor at every epoch tick, so that other calls and timers
        // run, and interrupt once the deadline has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok((store, denied))
    }

    /// Run one export in a fresh instance, within `budget`.
    async fn call<R, F>(&self, budget: Duration, f: F) -> (Result<R, Failure>, CallLog)
    where
        F: for<'a> FnOnce(
            &'a bindings::Actuator,
            &'a mut Store<host::HostState>,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>,
        >,
    {
        // This actuator's share first, then a free instance of the pool (declared
        // first, released last): a stuck actuator queues on its own share and never
        // holds more of the pool than that.
        let waited = Instant::now();
        let limits = &self.config.limits;
        let fds = u32::try_from(limits.host_resources)
            .unwrap_or(u32::MAX)
            .saturating_add(limits.http_requests)
            .min(self.descriptor_total);
        let permits = async {
            let share = self.share.acquire().await;
            let instance = self.instances.acquire().await;
            let fds = self.descriptors.acquire_many(fds).await;
            (share, instance, fds)
        };
        let (_share, _instance, _fds) = match tokio::time::timeout(budget, permits).await {
            Ok((Ok(share), Ok(instance), Ok(fds))) => (share, instance, fds),
            _ => {
                return (
                    Err(Failure::Busy(format!(
                        "no plugin instance came free for `{}` within {budget:?} ({} calls of it at most at once, {} in all)",
                        self.name, self.config.limits.concurrency, POOL_INSTANCES
                    ))),
                    CallLog::default(),
                );
            }
        };
        let budget = budget.saturating_sub(waited.elapsed()).max(EPOCH_TICK);
        let deadline = Instant::now() + budget;
        let (mut store, denied) = match self.store(deadline) {
            Ok(s) => s,
            Err(e) => return (Err(e), CallLog::default()),
        };
        let limits = &self.config.limits;
        // Boxed: a call waiting for its permits (a fleet's ticks queue here) stays small.
        let run = Box::pin(async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            f(&instance, &mut store).await
        });
        // The outer clock covers host calls too, which epochs cannot interrupt.
        let result = match tokio::time::timeout(budget + EPOCH_TICK * 5, run).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(classify(&e, budget, limits)),
            Err(_) => Err(Failure::Timeout(budget)),
        };
        let denied = denied.lock().ok().and_then(|d| d.clone()).map(|d| d.0);
        let state = store.data_mut();
        let log = CallLog {
            lines: std::mem::take(&mut state.logs),
            dropped: state.logs_dropped,
            denied,
        };
        (with_denial(result, &log), log)
    }

    pub async fn info(&self) -> (Result<PluginInfo, Failure>, CallLog) {
        let (result, log) = self
            .call(self.config.limits.timeout(), |a, s| {
                Box::pin(a.call_info(s))
            })
            .await;
        (
            result.map(|i| PluginInfo {
                name: i.name,
                version: i.version,
                target_kinds: i.target_kinds,
            }),
            log,
        )
    }

    pub async fn observe(&self, target: &str) -> (Result<Observation, Failure>, CallLog) {
        let target = target.to_string();
        let max = self.config.limits.message_bytes;
        let (result, log) = self
            .call(self.config.limits.timeout(), move |a, s| {
                Box::pin(async move { a.call_observe(s, &target).await })
            })
            .await;
        let result = result
            .and_then(|r| r.map_err(|e| Failure::from_plugin(e, max)))
            .map(|o| Observation {
                replicas: o.replicas,
                ready: o.ready,
            });
        (with_denial(result, &log), log)
    }

    /// Apply a decision: at most one in flight per target; transient errors retried
    /// with backoff and jitter, with the same id, while the budget lasts.
    pub async fn apply(&self, request: &Request) -> (Result<Outcome, Failure>, CallLog) {
        let _guard = {
            let Ok(mut set) = self.in_flight.lock() else {
                return (
                    Err(Failure::Busy("the in-flight set is poisoned".into())),
                    CallLog::default(),
                );
            };
            if !set.insert(request.target.clone()) {
                return (
                    Err(Failure::Busy(format!(
                        "a decision for `{}` is still in flight",
                        request.target
                    ))),
                    CallLog::default(),
                );
            }
            InFlight {
                set: self.in_flight.clone(),
                target: request.target.clone(),
            }
        };
        let budget = self.config.limits.timeout();
        let deadline = Instant::now() + budget;
        let mut log = CallLog::default();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let decision = wit::Decision {
                id: request.id.clone(),
                policy: request.policy.clone(),
                target: request.target.clone(),
                from: request.from,
                to: request.to,
                reason: request.reason.clone(),
                dry_run: request.dry_run,
                budget_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
            };
            let (result, call_log) = self
                .call(remaining, move |a, s| {
                    Box::pin(async move { a.call_apply(s, &decision).await })
                })
                .await;
            let max = self.config.limits.message_bytes;
            let result = with_denial(
                result.and_then(|r| r.map_err(|e| Failure::from_plugin(e, max))),
                &call_log,
            );
            log.lines.extend(call_log.lines);
            log.dropped += call_log.dropped;
            log.denied = call_log.denied.or(log.denied);
            let failure = match result {
                Ok(o) => {
                    return (
                        Ok(Outcome {
                            replicas: o.replicas,
                            message: truncate(o.message, max),
                            attempts: attempt,
                        }),
                        log,
                    );
                }
                Err(f) => f,
            };
            if !failure.is_transient() || attempt >= self.config.limits.attempts {
                return (Err(failure), log);
            }
            let wait = match &failure {
                Failure::RateLimited {
                    retry_after: Some(d),
                    ..
                } => *d,
                _ => backoff(attempt, &request.id),
            };
            if Instant::now() + wait >= deadline {
                return (Err(failure), log);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// Exponential backoff from 50 ms, capped at 2 s, with jitter in [50%, 100%]. The
/// jitter is drawn from a hash of the decision and attempt, so calls spread out.
fn backoff(attempt: u32, id: &str) -> Duration {
    let base = Duration::from_millis(50)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(2));
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(id.as_bytes());
    hasher.write_u32(attempt);
    let jitter = 0.5 + (hasher.finish() % 1000) as f64 / 2000.0;
    base.mul_f64(jitter)
}

/// Turn a wasmtime error into the failure an operator can act on.
fn classify(error: &wasmtime::Error, budget: Duration, limits: &Limits) -> Failure {
    let limit_mib = limits.memory_mib;
    if error.chain().any(|e| {
        matches!(
            e.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    }) {
        return Failure::ResourceLimit(format!(
            "the plugin held more than {} host resources at once (limits.host_resources)",
            limits.host_resources
        ));
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => Failure::Timeout(budget),
            Trap::StackOverflow => Failure::StackOverflow,
            other => Failure::Trap(format!("{other}")),
        };
    }
    let text = format!("{error:#}");
    if text.contains("forcing trap when growing memory") || text.contains("memory minimum size") {
        return Failure::MemoryLimit(limit_mib);
    }
    if text.contains("wasm trap: interrupt") {
        return Failure::Timeout(budget);
    }
    if text.contains("size of fields exceeds limit") {
        return Failure::ResourceLimit(format!(
            "the plugin built headers larger than {} bytes (limits.header_bytes): {}",
            limits.header_bytes,
            truncate(text, 512)
        ));
    }
    Failure::Trap(truncate(text, limits.message_bytes))
}

/// Check a component file against the WIT world without running a call: what `plugin
/// inspect` reports. Returns the plugin's `info`.
pub async fn inspect(runtime: &Runtime, path: &Path) -> Result<PluginInfo, Failure> {
    let config = ActuatorConfig::new("inspect", path);
    let actuator = runtime.load(&config, Path::new("."))?;
    actuator.info().await.0
}
