//! `policyctl serve`: the long-running evaluator. It joins the engine (pure), the
//! metric sources, the actuator runtime, the state file and an HTTP API.
//!
//! One task per policy tick: a scheduler wakes every policy at its `every` (aligned to
//! multiples of it), a tick fetches its samples through a shared, deduplicating,
//! bounded fetcher, reads the current count, runs `engine::tick`, persists the state
//! *before* calling the actuator (so a crash can never forget a scale event and break a
//! cooldown), and applies. A tick that is still running when its policy is next due is
//! skipped, never doubled.

pub mod api;
pub mod config;
pub mod coordination;
pub mod events;
pub mod history;
pub mod http;
pub mod metrics;
pub mod persist;
pub mod policies;
pub mod sources;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as TimeDelta, Utc};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared as SharedFuture};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::actuate::{self, Actuator, Failure, Request};
use crate::engine::{self, Decision, Explanation, Input, ScaleEvent, Schedules};
use crate::model::{Policy, RuleKind};
use config::Loaded;
use metrics::{ByCall, ByCallResult, ByDirection, ByMetric, ByPolicy, ByResult, BySource, Metrics};
use persist::{Override, PolicyState};
use sources::{Sample, Source};

/// Windows persisted by a previous run are kept when it stopped at most this long
/// ago and the source has no history to rebuild them from (Prometheus' default
/// `rules.alert.for-grace-period`).
pub const WINDOW_GRACE: Duration = Duration::from_secs(600);
/// Non-urgent state (recommendations, window starts) is written at most this often;
/// a decision is written before it is applied.
const STATE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the scheduler looks for due policies while it does not lead.
const SCHEDULER_PERIOD: Duration = Duration::from_millis(20);
/// The longest the scheduler sleeps when nothing is due sooner (its heartbeat, for
/// `/healthz`, is this fresh).
const SCHEDULER_IDLE_MS: i64 = 1000;
/// Identical queries started within this interval share one request.
const DEDUP_WINDOW: Duration = Duration::from_millis(500);
/// What the last tick of a policy saw and did, for `/v1/policies`. Kept compact (10,000
/// policies each hold one): metric names and words are made when asked.
#[derive(Debug, Clone)]
pub struct LastTick {
    pub at: DateTime<Utc>,
    pub current: u32,
    /// Where `current` came from: `actuator`, `current from METRIC`, `state`, `min`.
    pub current_from: Cow<'static, str>,
    /// One per metric of `policy`.
    pub samples: Vec<Option<f64>>,
    /// Why each missing metric (by index) is missing.
    pub missing: Vec<(usize, String)>,
    /// Boxed, as `applied` and `shadow`: most ticks hold, and each policy keeps its last
    /// tick (100,000 of them in one instance).
    pub decision: Option<Box<Decision>>,
    /// The result of the actuator call, when there was one.
    pub applied: Option<Box<api::Applied>>,
    /// Shared with the history ring and the decision record (one copy per reason).
    pub reason: Arc<str>,
    pub explanation: Option<Explanation>,
    /// Set when the tick could not decide.
    pub error: Option<String>,
    /// The count of the manual override active at this tick: the engine's explanation
    /// says what the policy alone would do, not what happens.
    pub overridden: Option<u32>,
    /// The policy as it was at this tick (the explanation's indices refer to it).
    pub policy: Arc<Policy>,
    /// For a policy in shadow mode: its count beside the other autoscaler's.
    pub shadow: Option<Box<api::Shadow>>,
}

impl LastTick {
    /// The explanation in words, one line per step (made when asked: 10,000 policies
    /// need not keep their words in memory).
    pub fn explanation_text(&self) -> Vec<String> {
        self.explanation.as_ref().map_or_else(Vec::new, |e| {
            let mut lines: Vec<String> = engine::explain::describe(&self.policy, e)
                .lines()
                .map(str::to_string)
                .collect();
            // Under an override the engine's verdict is not what happens: say so.
            if let (Some(n), Some(last)) = (self.overridden, lines.last_mut()) {
                let alone = last.trim_start().trim_start_matches("decision:").trim();
                *last = format!(
                    "  decision:       manual override: {} at {n} (the policy alone would {alone})",
                    if n == self.current { "hold" } else { "scale" }
                );
            }
            lines
        })
    }

    /// The JSON of API v1 (`Tick` in docs/openapi.json): samples and missing reasons
    /// by metric name, the explanation typed and in words.
    pub fn to_json(&self) -> serde_json::Value {
        let name = |i: usize| {
            self.policy
                .metrics
                .get(i)
                .map_or_else(String::new, |m| m.name.clone())
        };
        let samples: serde_json::Map<String, serde_json::Value> = self
            .samples
            .iter()
            .enumerate()
            .map(|(i, v)| (name(i), serde_json::json!(v)))
            .collect();
        let missing: serde_json::Map<String, serde_json::Value> = self
            .missing
            .iter()
            .map(|(i, r)| (name(*i), serde_json::json!(r)))
            .collect();
        serde_json::json!({
            "at": api::time(self.at),
            "current": self.current,
            "current_from": self.current_from,
            "samples": samples,
            "missing": missing,
            "decision": self.decision.as_deref().map(api::decision),
            "applied": self.applied,
            "reason": self.reason,
            "explanation": self
                .explanation
                .as_ref()
                .map(|e| api::explanation(&self.policy, e, &self.samples)),
            "explanation_text": self.explanation_text(),
            "override_active": self.overridden.is_some(),
            "error": self.error,
            "shadow": self.shadow,
        })
    }
}

/// The working memory of one policy, held only by its tick.
struct Run {
    policy: Arc<Policy>,
    schedules: Schedules,
    observe_unsupported: bool,
    /// Rebuild `for` windows from history before the next tick.
    needs_history: bool,
    /// When the state came from the file, and when that run last ticked.
    restored_tick: Option<DateTime<Utc>>,
}

pub struct Slot {
    pub name: String,
    /// Shared by the policies of one file.
    pub file: Mutex<Arc<Path>>,
    run: tokio::sync::Mutex<Run>,
    /// The policy's state: the engine's, the last known count, the override. The one
    /// copy: the tick updates it in place (never across an await) and the state writer
    /// reads it.
    persisted: Mutex<PolicyState>,
    /// A copy of the policy for readers that must not wait for a tick.
    policy: RwLock<Arc<Policy>>,
    last: Mutex<Option<Arc<LastTick>>>,
    /// Every tick of the last `history::KEEP`, in memory.
    history: Mutex<history::Ring>,
    busy: AtomicBool,
    /// Its shard, with `coordination: Etcd(shards: N)` (else 0).
    shard: u32,
    /// This policy's series, looked up once (a tick touches them without a map lookup).
    series: Arc<metrics::PolicySeries>,
    /// Unix milliseconds of the next tick.
    next_due: AtomicI64,
    removed: AtomicBool,
}

impl Slot {
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn last(&self) -> Option<Arc<LastTick>> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    pub fn manual(&self) -> Option<Override> {
        self.state(|p| p.manual.as_deref().cloned())
    }

    /// The ticks kept in memory at or after `since`, as the API gives them.
    pub fn history(&self, since: Option<DateTime<Utc>>) -> Vec<serde_json::Value> {
        let policy = self.policy();
        self.history
            .lock()
            .map(|h| h.since(&policy, since))
            .unwrap_or_default()
    }

    /// How many ticks the history ring holds now.
    pub fn history_len(&self) -> usize {
        self.history.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// The newest decision kept in the state file (it outlives `last`, which is the last
    /// tick's, usually a hold).
    pub fn last_decision(&self) -> Option<serde_json::Value> {
        self.state(|p| {
            p.records
                .iter()
                .rev()
                .find(|r| r.kind == "decision")
                .map(|r| r.to_json(&self.name))
        })
    }

    /// The decisions and override changes kept in the state file at or after `since`.
    pub fn records(&self, since: Option<DateTime<Utc>>) -> Vec<(DateTime<Utc>, serde_json::Value)> {
        self.state(|p| {
            p.records
                .iter()
                .filter(|r| since.is_none_or(|s| r.at >= s))
                .map(|r| (r.at, r.to_json(&self.name)))
                .collect()
        })
    }

    /// Read or change the policy's state (briefly: no await inside).
    fn state<R>(&self, f: impl FnOnce(&mut PolicyState) -> R) -> R {
        let mut guard = self
            .persisted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

/// What a tick has read before the engine runs.
struct Observed {
    policy: Arc<Policy>,
    samples: Vec<Option<f64>>,
    missing: Vec<(usize, String)>,
    current: u32,
    current_from: Cow<'static, str>,
}

/// The state to write: the slots (each state read under its lock while it is
/// serialised) and the states kept for policies not loaded now. Serialises as a
/// `persist::Snapshot`.
struct LiveSnapshot {
    /// In name order (`all_slots`).
    slots: Vec<Arc<Slot>>,
    restored: BTreeMap<String, PolicyState>,
}

impl Serialize for LiveSnapshot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct Policies<'a>(&'a LiveSnapshot);
        impl Serialize for Policies<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let live = self.0;
                let mut map =
                    serializer.serialize_map(Some(live.slots.len() + live.restored.len()))?;
                for slot in &live.slots {
                    slot.state(|state| map.serialize_entry(&slot.name, state))?;
                }
                for (name, state) in &live.restored {
                    map.serialize_entry(name, state)?;
                }
                map.end()
            }
        }
        let mut snapshot = serializer.serialize_struct("Snapshot", 3)?;
        snapshot.serialize_field("version", &persist::VERSION)?;
        snapshot.serialize_field("saved_at", &Some(Utc::now()))?;
        snapshot.serialize_field("policies", &Policies(self))?;
        snapshot.end()
    }
}

type Fetch = SharedFuture<BoxFuture<'static, Sample>>;

/// One metric source with its concurrency bound and in-flight queries.
pub struct SourceEntry {
    pub name: String,
    pub source: Arc<Source>,
    permits: Arc<Semaphore>,
    inflight: Mutex<HashMap<String, (Instant, Fetch)>>,
    /// Why the source is down, while it is (logged once when it goes, once when it
    /// comes back).
    down: Mutex<Option<String>>,
}

/// The status of one watched policy file.
#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub path: PathBuf,
    pub policies: Vec<String>,
    /// Why the file's current text is not loaded (its last good version runs).
    pub error: Option<String>,
    /// The SHA-256 of the text last read: an unchanged file is not checked again.
    #[serde(skip)]
    pub digest: [u8; 32],
}

pub struct Service {
    pub loaded: Loaded,
    pub sources: BTreeMap<String, Arc<SourceEntry>>,
    pub runtime: actuate::Runtime,
    pub actuators: RwLock<BTreeMap<String, Arc<Actuator>>>,
    pub slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    /// `coordination: Etcd(shards: N)`'s N (1 without it).
    shards: u32,
    pub files: Mutex<BTreeMap<PathBuf, FileStatus>>,
    pub metrics: Metrics,
    /// The override tokens, by name.
    pub tokens: Vec<(String, String)>,
    pub ready: AtomicBool,
    pub stopping: AtomicBool,
    /// Unix milliseconds of the scheduler's last pass (for `/healthz`).
    pub heartbeat: AtomicI64,
    /// States read at start-up, waiting for their policies to load.
    restored: Mutex<BTreeMap<String, PolicyState>>,
    restored_at: Option<DateTime<Utc>>,
    wake: Notify,
    state_file: PathBuf,
    dirty: AtomicU64,
    urgent: AtomicU64,
    written: tokio::sync::watch::Sender<u64>,
    /// The generation of the last write that reached the disk.
    durable: AtomicU64,
    /// Why the last write failed, while it has not succeeded since.
    pub state_error: Mutex<Option<String>>,
    state_wake: Notify,
    reloads: tokio::sync::Mutex<()>,
    in_flight: AtomicU64,
    drained: Notify,
    /// Ticks, decisions and override changes as Server-Sent Events (`GET /v1/events`).
    pub events: events::Events,
    /// With `coordination: Etcd(…)`: the election and the state store.
    pub coordinator: std::sync::OnceLock<Arc<coordination::Coordinator>>,
    /// Each policy's state as last written to etcd (only changes are written).
    in_etcd: Mutex<HashMap<String, Vec<u8>>>,
}

/// A start-up failure: exit 2.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Take back a scale event that did not happen (its apply failed).
fn undo(slot: &Slot, last_event: Option<DateTime<Utc>>, windows: Vec<Option<DateTime<Utc>>>) {
    slot.state(|p| {
        p.state.events.pop_back();
        p.state.last_event = last_event;
        p.state.windows = windows;
    });
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The next instant after `after` that is a multiple of `every` since the epoch.
fn next_aligned(after: DateTime<Utc>, every: Duration) -> i64 {
    let every = (every.as_millis() as i64).max(1000);
    (after.timestamp_millis().div_euclid(every) + 1) * every
}

impl Service {
    /// Everything that can fail before serving: sources, plugins, the state file.
    pub fn new(loaded: Loaded) -> Result<Arc<Service>, StartError> {
        let mut sources = BTreeMap::new();
        for s in &loaded.config.sources {
            let source = Source::new(s, &loaded).map_err(StartError)?;
            sources.insert(
                s.name.clone(),
                Arc::new(SourceEntry {
                    name: s.name.clone(),
                    source: Arc::new(source),
                    permits: Arc::new(Semaphore::new(loaded.config.max_concurrent_queries.max(1))),
                    down: Mutex::new(None),
                    inflight: Mutex::new(HashMap::new()),
                }),
            );
        }
        let cache = loaded.config.cache_dir.as_ref().map(|p| loaded.resolve(p));
        raise_descriptor_limit();
        let runtime = actuate::Runtime::new(cache)
            .map_err(|e| StartError(format!("cannot start the plugin runtime: {e}")))?;
        let mut actuators = BTreeMap::new();
        for a in &loaded.config.actuators {
            let actuator = runtime.load(a, &loaded.base).map_err(|e| {
                let hint = if loaded.resolve(&a.plugin).exists() {
                    ""
                } else {
                    "\n  (the shipped plugins are built with: rustup target add wasm32-wasip2 && cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml)"
                };
                StartError(format!(
                    "actuator `{}`: cannot load its plugin: {e}{hint}",
                    a.name
                ))
            })?;
            actuators.insert(a.name.clone(), Arc::new(actuator));
        }
        let tokens = loaded.override_tokens().map_err(StartError)?;
        let state_file = loaded.state_file();
        // On etcd, the state is the leader's to load when it is elected.
        let (snapshot, warning) = match loaded.config.coordination {
            config::Coordination::File => persist::load(&state_file).map_err(StartError)?,
            config::Coordination::Etcd { .. } => (persist::Snapshot::default(), None),
        };
        if let Some(w) = warning {
            tracing::error!("{w}");
        }
        let (written, _) = tokio::sync::watch::channel(0);
        let shards = loaded
            .config
            .coordination
            .etcd()
            .map_or(1, |e| e.shards.max(1));
        Ok(Arc::new(Service {
            shards,
            loaded,
            sources,
            runtime,
            actuators: RwLock::new(actuators),
            slots: RwLock::new(BTreeMap::new()),
            files: Mutex::new(BTreeMap::new()),
            metrics: Metrics::new(),
            tokens,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            heartbeat: AtomicI64::new(now_ms()),
            restored_at: snapshot.saved_at,
            restored: Mutex::new(snapshot.policies),
            wake: Notify::new(),
            state_file,
            dirty: AtomicU64::new(0),
            urgent: AtomicU64::new(0),
            written,
            durable: AtomicU64::new(0),
            state_error: Mutex::new(None),
            state_wake: Notify::new(),
            reloads: tokio::sync::Mutex::new(()),
            in_flight: AtomicU64::new(0),
            drained: Notify::new(),
            events: events::Events::new(Utc::now()),
            coordinator: std::sync::OnceLock::new(),
            in_etcd: Mutex::new(HashMap::new()),
        }))
    }

    pub fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots.read().ok().and_then(|s| s.get(name).cloned())
    }

    pub fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.slots
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    fn actuator(&self, name: &str) -> Option<Arc<Actuator>> {
        self.actuators
            .read()
            .ok()
            .and_then(|a| a.get(name).cloned())
    }

    /// Put a newly loaded or changed policy in place (called by the reloader).
    pub(crate) fn install(&self, policy: Policy, file: &Arc<Path>) {
        let name = policy.name.clone();
        let policy = Arc::new(policy);
        if let Some(slot) = self.slot(&name) {
            if let Ok(mut f) = slot.file.lock() {
                *f = file.clone();
            }
            let old = slot.policy();
            if *old == *policy {
                return;
            }
            if let Ok(mut p) = slot.policy.write() {
                *p = policy.clone();
            }
            // The tick picks the new version up: it compares its own copy.
            slot.next_due.store(now_ms(), Ordering::Release);
            self.wake.notify_one();
            return;
        }
        let restored = self
            .restored
            .lock()
            .ok()
            .and_then(|mut r| r.remove(&name))
            .unwrap_or_default();
        let run = Run {
            policy: policy.clone(),
            schedules: Schedules::new(),
            observe_unsupported: false,
            needs_history: true,
            restored_tick: restored.ticked_at.or(self.restored_at),
        };
        let slot = Arc::new(Slot {
            name: name.clone(),
            file: Mutex::new(file.clone()),
            run: tokio::sync::Mutex::new(run),
            persisted: Mutex::new(restored),
            policy: RwLock::new(policy),
            last: Mutex::new(None),
            history: Mutex::new(history::Ring::default()),
            busy: AtomicBool::new(false),
            shard: coordination::shard_of(&name, self.shards),
            series: self.metrics.series(&name),
            // A new policy decides at once.
            next_due: AtomicI64::new(now_ms()),
            removed: AtomicBool::new(false),
        });
        if let Ok(mut slots) = self.slots.write() {
            slots.insert(name, slot);
            self.metrics.policies.set(slots.len() as i64);
        }
        self.wake.notify_one();
    }

    /// Stop running a policy (its file, or the policy in it, is gone). Its state is
    /// kept in the state file's memory in case it comes back (a rename).
    pub(crate) fn uninstall(&self, name: &str) {
        let removed = self.slots.write().ok().and_then(|mut s| {
            let r = s.remove(name);
            self.metrics.policies.set(s.len() as i64);
            r
        });
        if let Some(slot) = removed {
            slot.removed.store(true, Ordering::Release);
            if let (Ok(p), Ok(mut r)) = (slot.persisted.lock(), self.restored.lock()) {
                r.insert(name.to_string(), p.clone());
            }
            self.metrics.forget(name);
        }
    }

    /// The scheduler: ticks due policies until `stop` is set.
    pub async fn schedule(self: &Arc<Self>) {
        while !self.stopping.load(Ordering::Acquire) {
            let now = now_ms();
            self.heartbeat.store(now, Ordering::Release);
            // On etcd, only the leader ticks (with shards, each its shards' policies).
            if !self.may_act() {
                tokio::select! {
                    () = tokio::time::sleep(SCHEDULER_PERIOD) => {}
                    () = self.wake.notified() => {}
                }
                continue;
            }
            // Only the due slots are cloned out of the map: a pass over 10,000 policies
            // that are not due is a scan of atomics under a read lock. The pass also
            // finds the next due time, and the scheduler sleeps until then: a pass every
            // 20 ms over 100,000 policies took a fifth of a core.
            let ticking = self.coordinator.get().map(|c| c.ticking());
            let mut earliest = now.saturating_add(SCHEDULER_IDLE_MS);
            let due: Vec<Arc<Slot>> = self
                .slots
                .read()
                .map(|slots| {
                    slots
                        .values()
                        .filter(|s| {
                            ticking
                                .as_ref()
                                .is_none_or(|t| t.get(s.shard as usize).copied().unwrap_or(false))
                        })
                        .filter(|s| {
                            let due = s.next_due.load(Ordering::Acquire);
                            if due > now {
                                earliest = earliest.min(due);
                            }
                            due <= now
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for slot in due {
                // Due again at the next multiple of its `every`, whether it ticks now or
                // its last tick is still running.
                if let Some(at) = DateTime::from_timestamp_millis(now) {
                    let next = next_aligned(at, slot.policy().every);
                    earliest = earliest.min(next);
                    slot.next_due.store(next, Ordering::Release);
                }
                if slot.busy.swap(true, Ordering::AcqRel) {
                    self.metrics
                        .ticks_skipped
                        .get_or_create(&ByPolicy {
                            policy: slot.name.clone(),
                        })
                        .inc();
                    continue;
                }
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                let service = self.clone();
                // A round spawns every due policy's tick at once (100,000 when their
                // `every`s align), and they wait together at their fetches and at the
                // actuator. Boxed, a tick's future is small there (232 bytes, not 2.8
                // KB): what follows the fetches (`decide`), what follows the count
                // (`conclude`) and the calls that may wait long are boxed in turn.
                // (Bounding the ticks in flight instead saved nothing: docs/serve.md.)
                tokio::spawn(async move {
                    Box::pin(service.tick(&slot)).await;
                    slot.busy.store(false, Ordering::Release);
                    if service.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                        service.drained.notify_waiters();
                    }
                });
            }
            // Until the next due time (a new policy, an override, a reload or a shard
            // taken over sets one sooner and wakes the scheduler).
            let idle = u64::try_from(earliest.saturating_sub(now_ms())).unwrap_or(0);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(idle.max(1))) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Wait until no tick is running, at most `grace`. True when all finished.
    pub async fn drain(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.drained.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight.load(Ordering::Acquire) == 0;
            }
        }
    }

    /// One sample, shared with every identical query started within `DEDUP_WINDOW`.
    pub async fn fetch(&self, source: &str, query: &str, at: DateTime<Utc>) -> Sample {
        let Some(entry) = self.sources.get(source) else {
            return Err(format!("no source `{source}` in the configuration"));
        };
        let fetch = {
            let Ok(mut inflight) = entry.inflight.lock() else {
                return Err("the fetcher is poisoned".into());
            };
            let now = Instant::now();
            if inflight.len() > 1024 {
                inflight.retain(|_, (started, _)| now.duration_since(*started) < DEDUP_WINDOW);
            }
            match inflight.get(query) {
                Some((started, f)) if now.duration_since(*started) < DEDUP_WINDOW => f.clone(),
                _ => {
                    let source = entry.source.clone();
                    let permits = entry.permits.clone();
                    let q = query.to_string();
                    let timeout = source.timeout();
                    self.metrics
                        .fetches
                        .get_or_create(&BySource {
                            source: entry.name.clone(),
                        })
                        .inc();
                    let f: BoxFuture<'static, Sample> = async move {
                        let run = async {
                            let _permit = permits
                                .acquire()
                                .await
                                .map_err(|_| "the source is closed".to_string())?;
                            source.instant(&q, at).await
                        };
                        tokio::time::timeout(timeout + Duration::from_millis(500), run)
                            .await
                            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
                    }
                    .boxed();
                    let f = f.shared();
                    inflight.insert(query.to_string(), (now, f.clone()));
                    f
                }
            }
        };
        let sample = fetch.await;
        let outage = sample.as_ref().err().filter(|e| sources::is_outage(e));
        if let Ok(mut down) = entry.down.lock() {
            match (down.is_some(), outage) {
                (false, Some(why)) => {
                    tracing::warn!(source = %entry.name, error = %why, "source down: {why}");
                    *down = Some(why.clone());
                }
                (true, None) => {
                    tracing::info!(source = %entry.name, "source is back");
                    *down = None;
                }
                _ => {}
            }
        }
        if sample.is_err() {
            self.metrics
                .fetch_errors
                .get_or_create(&BySource {
                    source: entry.name.clone(),
                })
                .inc();
        }
        sample
    }

    /// Rebuild the `for` windows of a policy from its sources' history.
    async fn rebuild_windows(&self, slot: &Slot, run: &Run, current: u32, now: DateTime<Utc>) {
        let policy = run.policy.clone();
        let longest = policy
            .rules
            .iter()
            .filter_map(|r| match &r.kind {
                RuleKind::When { sustain, .. } => *sustain,
                _ => None,
            })
            .max();
        let persisted_ok = run
            .restored_tick
            .is_some_and(|t| now - t <= TimeDelta::from_std(WINDOW_GRACE).unwrap_or_default());
        let Some(longest) = longest else {
            return;
        };
        let every = policy.every;
        let has_history = policy.metrics.iter().all(|m| {
            self.sources
                .get(&m.source)
                .is_some_and(|s| matches!(*s.source, Source::Prometheus(_)))
        });
        let forget = || slot.state(|p| p.state.windows.iter_mut().for_each(|w| *w = None));
        if !has_history {
            if !persisted_ok {
                forget();
            }
            return;
        }
        let span = TimeDelta::from_std(longest + every * 2).unwrap_or(TimeDelta::minutes(10));
        let start = now - span;
        let mut columns = Vec::new();
        for m in &policy.metrics {
            let Some(entry) = self.sources.get(&m.source) else {
                return;
            };
            match entry.source.range(&m.query, start, now, every).await {
                Some(Ok(series)) => columns.push(series),
                Some(Err(e)) => {
                    tracing::warn!(policy = %policy.name, metric = %m.name, "cannot rebuild windows from history: {e}");
                    if !persisted_ok {
                        forget();
                    }
                    return;
                }
                None => return,
            }
        }
        let points = columns.iter().map(Vec::len).min().unwrap_or(0);
        let history: Vec<(DateTime<Utc>, Vec<Option<f64>>)> = (0..points)
            .map(|i| (columns[0][i].0, columns.iter().map(|c| c[i].1).collect()))
            .collect();
        slot.state(|p| {
            p.state.windows =
                engine::rebuild_windows(&policy, &history, current, p.state.last_event);
        });
        tracing::debug!(policy = %policy.name, points, "windows rebuilt from history");
    }

    /// One evaluation of one policy, now.
    pub async fn tick(&self, slot: &Slot) {
        self.tick_at(slot, Utc::now()).await;
    }

    /// One evaluation of one policy as of `now` (benchmarks advance a virtual clock, so
    /// that histories hold what they would at the policy's `every`).
    pub async fn tick_at(&self, slot: &Slot, now: DateTime<Utc>) {
        let mut run = slot.run.lock().await;
        if slot.removed.load(Ordering::Acquire) {
            return;
        }
        let latest = slot.policy();
        if !Arc::ptr_eq(&latest, &run.policy) {
            if latest.rules != run.policy.rules {
                slot.state(|p| p.state.windows.clear());
            }
            run.policy = latest;
            run.schedules = Schedules::new();
        }
        let policy = run.policy.clone();
        slot.series.tick();

        // Samples, concurrently (identical queries shared across policies).
        let fetches = policy
            .metrics
            .iter()
            .map(|m| self.fetch(&m.source, &m.query, now));
        let results: Vec<Sample> = futures::future::join_all(fetches).await;
        // Boxed: a tick waits at its fetches with a small future (100,000 of them wait
        // there at once when a fleet's `every`s align).
        Box::pin(self.decide(slot, &mut run, results, now)).await;
    }

    /// A tick once its samples are in: what is missing (logged when that changes), the
    /// current count, the windows rebuilt when needed; then `conclude`.
    async fn decide(&self, slot: &Slot, run: &mut Run, results: Vec<Sample>, now: DateTime<Utc>) {
        let policy = run.policy.clone();
        let mut missing = Vec::new();
        let samples: Vec<Option<f64>> = results
            .iter()
            .zip(&policy.metrics)
            .enumerate()
            .map(|(i, (r, m))| match r {
                Ok(v) => Some(*v),
                Err(reason) => {
                    missing.push((i, reason.clone()));
                    self.metrics
                        .missing_samples
                        .get_or_create(&ByMetric {
                            policy: policy.name.clone(),
                            metric: m.name.clone(),
                        })
                        .inc();
                    None
                }
            })
            .collect();

        // Missing data is logged when it starts and when it ends, not every tick.
        let changed = slot.last().map_or(!missing.is_empty(), |l| {
            !l.missing
                .iter()
                .map(|(i, _)| *i)
                .eq(missing.iter().map(|(i, _)| *i))
        });
        if changed {
            if missing.is_empty() {
                tracing::info!(policy = %policy.name, "metrics: every sample is back");
            } else {
                let what: Vec<String> = missing
                    .iter()
                    .map(|(i, why)| {
                        let name = policy.metrics.get(*i).map_or("?", |m| m.name.as_str());
                        format!("{name}: {why}")
                    })
                    .collect();
                tracing::warn!(
                    policy = %policy.name,
                    missing = %what.join("; "),
                    "metrics: samples missing"
                );
            }
        }

        // The current replica count.
        let actuator = self.actuator(&policy.target.actuator);
        let (current, current_from) =
            match Box::pin(self.current(slot, run, &policy, &samples, actuator.as_deref())).await {
                Ok(found) => found,
                Err(error) => {
                    self.metrics
                        .tick_errors
                        .get_or_create(&ByPolicy {
                            policy: policy.name.clone(),
                        })
                        .inc();
                    tracing::warn!(policy = %policy.name, "cannot decide: {error}");
                    let last = LastTick {
                        at: now,
                        current: slot.state(|p| p.replicas).unwrap_or(policy.min),
                        current_from: "unknown".into(),
                        samples: samples.clone(),
                        missing,
                        decision: None,
                        applied: None,
                        reason: "no decision: the current replica count is unknown".into(),
                        explanation: None,
                        error: Some(error),
                        overridden: None,
                        policy: policy.clone(),
                        shadow: None,
                    };
                    self.publish(slot, last, false);
                    return;
                }
            };
        if run.needs_history {
            run.needs_history = false;
            Box::pin(self.rebuild_windows(slot, run, current, now)).await;
        }

        // Boxed too: ticks wait at the actuator's `observe` in numbers as well.
        Box::pin(self.conclude(
            slot,
            run,
            Observed {
                policy,
                samples,
                missing,
                current,
                current_from,
            },
            actuator,
            now,
        ))
        .await;
    }

    /// A tick once its samples and its current count are known: the engine (or the
    /// override), the actuator's call, the record.
    async fn conclude(
        &self,
        slot: &Slot,
        run: &mut Run,
        observed: Observed,
        actuator: Option<Arc<Actuator>>,
        now: DateTime<Utc>,
    ) {
        let Observed {
            policy,
            samples,
            missing,
            current,
            current_from,
        } = observed;
        // The engine (or a manual override), on the state in place. What a failed apply
        // must undo is kept.
        let (result, manual, before_last_event, before_windows, started) = slot.state(|p| {
            let before_last_event = p.state.last_event;
            let before_windows = p.state.windows.clone();
            let started = Instant::now();
            let manual = p.manual.clone().filter(|o| o.active(now));
            if manual.is_none() && p.manual.is_some() {
                tracing::info!(policy = %policy.name, "manual override expired");
                p.manual = None;
            }
            let input = Input {
                now,
                current,
                samples: &samples,
            };
            let result = if let Some(o) = &manual {
                // The engine still explains what it would do.
                let mut scratch = p.state.clone();
                let t = engine::tick(&policy, &mut run.schedules, &mut scratch, &input);
                let until = o
                    .until
                    .map_or_else(|| "deleted".to_string(), |u| u.to_rfc3339());
                let decision = (o.replicas != current).then(|| {
                    p.state.events.push_back(ScaleEvent {
                        at: now,
                        from: current,
                        to: o.replicas,
                    });
                    p.state.last_event = Some(now);
                    Decision {
                        policy: policy.name.clone(),
                        target: policy.target.id.clone(),
                        from: current,
                        to: o.replicas,
                        at: now,
                        reason: format!("manual override to {} until {until}", o.replicas),
                        dry_run: policy.dry_run,
                    }
                });
                engine::Tick {
                    decision,
                    explanation: t.explanation,
                }
            } else {
                engine::tick(&policy, &mut run.schedules, &mut p.state, &input)
            };
            p.replicas = Some(current);
            (result, manual, before_last_event, before_windows, started)
        });
        self.metrics
            .engine_seconds
            .observe(started.elapsed().as_secs_f64());
        let reason = match &result.decision {
            Some(d) => d.reason.clone(),
            None if manual.is_some() => "manual override holds the count".into(),
            None => engine::explain::reason(&policy, &result.explanation),
        };
        let desired = result.decision.as_ref().map_or(current, |d| d.to);
        slot.series.set(current, desired, manual.is_some());
        let shadow = Box::pin(self.shadow(&policy.name, desired, now)).await;
        let mut applied = None;
        if let Some(decision) = &result.decision {
            let dry_run = decision.dry_run || self.loaded.config.dry_run || shadow.is_some();
            let direction = if decision.to > decision.from {
                "up"
            } else {
                "down"
            };
            self.metrics
                .decisions
                .get_or_create(&ByDirection {
                    policy: policy.name.clone(),
                    direction: direction.into(),
                    dry_run: dry_run.to_string(),
                })
                .inc();
            tracing::info!(
                policy = %policy.name,
                target = %decision.target,
                from = decision.from,
                to = decision.to,
                dry_run,
                "decision: {}",
                decision.reason
            );
            if dry_run {
                applied = Some(api::Applied {
                    status: "dry_run",
                    attempts: None,
                    message: "dry run: not sent".into(),
                    failure: None,
                });
                // Nothing was scaled: no scale event, so cooldowns, rate limits and
                // `for` windows go on from the count that really is (in shadow mode,
                // the one the other autoscaler set).
                undo(slot, before_last_event, before_windows);
            } else if actuator.is_some()
                && let Err(why) = Box::pin(self.flush()).await
            {
                // The scale event must reach the disk before the actuator is called; a
                // decision that cannot be remembered is not applied (after a crash, the
                // service would not know of it and could break its cooldown).
                tracing::error!(policy = %policy.name, "decision not applied: {} cannot be written: {why}", self.store());
                applied = Some(api::Applied {
                    status: "not_applied",
                    attempts: None,
                    message: format!("not applied: {} cannot be written: {why}", self.store()),
                    failure: None,
                });
                undo(slot, before_last_event, before_windows);
            } else if actuator.is_some() && !self.may_apply(slot) {
                // Written, but the lease may have run out since: another instance may
                // lead now and decide for itself.
                tracing::error!(policy = %policy.name, "decision not applied: this instance no longer leads");
                applied = Some(api::Applied {
                    status: "not_applied",
                    attempts: None,
                    message: "not applied: this instance no longer leads".into(),
                    failure: None,
                });
                undo(slot, before_last_event, before_windows);
            } else if let Some(actuator) = &actuator {
                let request = Request {
                    id: format!("{}@{}", policy.name, now.timestamp_millis()),
                    policy: policy.name.clone(),
                    target: decision.target.clone(),
                    from: decision.from,
                    to: decision.to,
                    reason: decision.reason.clone(),
                    dry_run: false,
                };
                let started = Instant::now();
                let (outcome, _log) = Box::pin(actuator.apply(&request)).await;
                self.record_call(&actuator.name, "apply", started, outcome.as_ref().err());
                match outcome {
                    Ok(o) => {
                        slot.state(|p| p.replicas = Some(o.replicas));
                        // A plugin that could not observe before its first apply (`record`)
                        // may be able to now.
                        run.observe_unsupported = false;
                        applied = Some(api::Applied {
                            status: "applied",
                            attempts: Some(o.attempts),
                            message: o.message,
                            failure: None,
                        });
                    }
                    Err(failure) => {
                        tracing::error!(policy = %policy.name, actuator = %actuator.name, kind = failure.kind(), "apply failed: {failure}");
                        applied = Some(api::Applied {
                            status: "failed",
                            attempts: None,
                            message: failure.to_string(),
                            failure: Some(failure.kind()),
                        });
                        // It did not happen: no scale event, windows as they were.
                        undo(slot, before_last_event, before_windows);
                    }
                }
            } else {
                applied = Some(api::Applied {
                    status: "no_actuator",
                    attempts: None,
                    message: format!("no actuator `{}`", policy.target.actuator),
                    failure: None,
                });
                undo(slot, before_last_event, before_windows);
            }
        }
        let last = LastTick {
            at: now,
            current,
            current_from,
            samples,
            missing,
            decision: result.decision.clone().map(Box::new),
            applied: applied.map(Box::new),
            reason: reason.into(),
            explanation: Some(result.explanation),
            error: None,
            overridden: manual.as_ref().map(|o| o.replicas),
            policy: policy.clone(),
            shadow: shadow.map(Box::new),
        };
        // A decision sent to the actuator is written at once (its scale event already
        // was, before the call); one that was not (dry run) waits for the next write
        // like any other state: at 100,000 dry-run policies, two ticks in three decide,
        // and writing the whole state for each kept a core busy.
        let urgent = last.applied.as_ref().is_some_and(|a| a.status != "dry_run");
        self.publish(slot, last, urgent);
    }

    /// For a policy in shadow mode: the other autoscaler's count now, beside ours, and
    /// exported.
    async fn shadow(&self, policy: &str, ours: u32, now: DateTime<Utc>) -> Option<api::Shadow> {
        let config = self
            .loaded
            .config
            .shadow
            .iter()
            .find(|s| s.policy == policy)?;
        let other = match self.sources.get(&config.source) {
            Some(entry) => match entry.source.instant(&config.query, now).await {
                Ok(v) if v.is_finite() => Some(v),
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(policy, source = %config.source, "shadow query: {e}");
                    None
                }
            },
            None => None,
        };
        let by = ByPolicy {
            policy: policy.to_string(),
        };
        self.metrics
            .shadow_desired
            .get_or_create(&by)
            .set(i64::from(ours));
        match other {
            Some(v) => {
                self.metrics.shadow_other_desired.get_or_create(&by).set(v);
                self.metrics
                    .shadow_divergence
                    .get_or_create(&by)
                    .set(f64::from(ours) - v);
            }
            None => {
                // No sample: no series, rather than a stale one.
                self.metrics.shadow_other_desired.remove(&by);
                self.metrics.shadow_divergence.remove(&by);
            }
        }
        Some(api::Shadow {
            source: config.source.clone(),
            query: config.query.clone(),
            ours,
            other,
            difference: other.map(|v| f64::from(ours) - v),
        })
    }

    fn record_call(&self, actuator: &str, call: &str, started: Instant, failure: Option<&Failure>) {
        self.metrics
            .actuator_calls
            .get_or_create(&ByCallResult {
                actuator: actuator.to_string(),
                call: call.to_string(),
                result: failure.map_or("ok", Failure::kind).to_string(),
            })
            .inc();
        self.metrics
            .actuator_seconds
            .get_or_create(&ByCall {
                actuator: actuator.to_string(),
                call: call.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The replica count now, and where it came from.
    async fn current(
        &self,
        slot: &Slot,
        run: &mut Run,
        policy: &Policy,
        samples: &[Option<f64>],
        actuator: Option<&Actuator>,
    ) -> Result<(u32, Cow<'static, str>), String> {
        if let Some(i) = policy.current_from {
            let name = &policy.metrics[i].name;
            return match samples.get(i).copied().flatten() {
                Some(v) if v >= 0.0 && v < f64::from(u32::MAX) => {
                    Ok((v.round() as u32, format!("current from {name}").into()))
                }
                Some(v) => Err(format!(
                    "`current from {name}` gave {v}, not a replica count"
                )),
                None => Err(format!("`current from {name}`: the metric is missing")),
            };
        }
        if let Some(actuator) = actuator
            && !run.observe_unsupported
        {
            let started = Instant::now();
            let (observed, _log) = actuator.observe(&policy.target.id).await;
            self.record_call(&actuator.name, "observe", started, observed.as_ref().err());
            match observed {
                Ok(o) => return Ok((o.replicas, "actuator".into())),
                Err(Failure::Unsupported(_)) => run.observe_unsupported = true,
                Err(f) => {
                    return Err(format!(
                        "actuator `{}` cannot observe `{}` ({}): {f}",
                        actuator.name,
                        policy.target.id,
                        f.kind()
                    ));
                }
            }
        }
        match slot.state(|p| p.replicas) {
            Some(r) => Ok((r, "state".into())),
            None => Ok((policy.min, "min".into())),
        }
    }

    /// Make the tick's result visible and mark the state for writing.
    fn publish(&self, slot: &Slot, last: LastTick, urgent: bool) {
        let overridden = slot.state(|p| {
            p.ticked_at = Some(last.at);
            if let Some(d) = &last.decision {
                history::record(
                    &mut p.records,
                    history::Record {
                        at: d.at,
                        kind: std::borrow::Cow::Borrowed("decision"),
                        from: Some(d.from),
                        to: Some(d.to),
                        reason: last.reason.clone(),
                        status: last
                            .applied
                            .as_ref()
                            .map(|a| std::borrow::Cow::Borrowed(a.status)),
                        author: None,
                        forced: false,
                    },
                );
            }
            p.manual.as_ref().is_some_and(|o| o.active(last.at))
        });
        if let Ok(mut h) = slot.history.lock() {
            h.push(
                &last,
                overridden,
                Duration::from_secs(self.loaded.config.history_s),
            );
        }
        if self.events.wanted() {
            let tick = serde_json::json!({ "policy": slot.name, "tick": last.to_json() });
            self.events.send("tick", Arc::from(tick.to_string()));
            if let Some(d) = &last.decision {
                let json = api::decision(d).to_string();
                self.events.send("decision", Arc::from(json));
            }
        }
        if let Ok(mut l) = slot.last.lock() {
            *l = Some(Arc::new(last));
        }
        if urgent {
            self.urgent.fetch_add(1, Ordering::AcqRel);
        }
        self.dirty.fetch_add(1, Ordering::AcqRel);
        self.state_wake.notify_one();
    }

    /// Set or clear a manual override.
    pub async fn set_override(&self, name: &str, manual: Option<Override>, author: &str) -> bool {
        let Some(slot) = self.slot(name) else {
            return false;
        };
        let record = history::Record {
            at: Utc::now(),
            kind: std::borrow::Cow::Borrowed(if manual.is_some() {
                "override_set"
            } else {
                "override_deleted"
            }),
            from: slot.state(|p| p.replicas),
            to: manual.as_ref().map(|o| o.replicas),
            reason: manual
                .as_ref()
                .and_then(|o| o.reason.clone())
                .unwrap_or_default()
                .into(),
            status: None,
            author: Some(author.to_string()),
            forced: manual.as_ref().is_some_and(|o| o.forced),
        };
        if self.events.wanted() {
            let json = record.to_json(name).to_string();
            self.events.send("override", Arc::from(json));
        }
        slot.state(|p| {
            p.manual = manual.map(Box::new);
            history::record(&mut p.records, record);
        });
        // A failed write is logged and shown by /readyz; the decision that follows
        // will not be applied until the state can be written.
        let _ = self.flush().await;
        slot.next_due.store(now_ms(), Ordering::Release);
        self.wake.notify_one();
        true
    }

    /// What the state writer writes: every policy's state, read under its own lock as
    /// it is serialised (no copy of 100,000 states, no buffer of the whole file).
    fn live_snapshot(&self) -> LiveSnapshot {
        let slots = self.all_slots();
        let mut restored = self.restored.lock().map(|r| r.clone()).unwrap_or_default();
        // A policy being installed or removed meanwhile is written once, as a slot.
        restored.retain(|name, _| {
            slots
                .binary_search_by(|s| s.name.as_str().cmp(name))
                .is_err()
        });
        LiveSnapshot { slots, restored }
    }

    /// Write the state now and wait until it is on disk; the error when it could not
    /// be written.
    pub async fn flush(&self) -> Result<(), String> {
        let wanted = self.dirty.fetch_add(1, Ordering::AcqRel) + 1;
        self.urgent.fetch_add(1, Ordering::AcqRel);
        self.state_wake.notify_one();
        let mut rx = self.written.subscribe();
        let _ = rx.wait_for(|w| *w >= wanted).await;
        if self.durable.load(Ordering::Acquire) >= wanted {
            Ok(())
        } else {
            Err(self
                .state_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "the write failed".into()))
        }
    }

    /// The state writer: urgent writes at once, others at most every second.
    pub async fn write_state(self: &Arc<Self>) {
        let mut last_write = Instant::now() - STATE_INTERVAL;
        let mut urgent_seen = self.urgent.load(Ordering::Acquire);
        loop {
            let _ = tokio::time::timeout(STATE_INTERVAL, self.state_wake.notified()).await;
            let dirty = self.dirty.load(Ordering::Acquire);
            if dirty == *self.written.borrow() {
                continue;
            }
            let urgent = self.urgent.load(Ordering::Acquire);
            if urgent == urgent_seen && last_write.elapsed() < STATE_INTERVAL {
                continue;
            }
            urgent_seen = urgent;
            self.write_now(dirty).await;
            last_write = Instant::now();
        }
    }

    async fn write_now(&self, generation: u64) {
        let snapshot = self.live_snapshot();
        let error = match self.coordinator.get() {
            Some(coordinator) => self.write_etcd(coordinator, &snapshot).await.err(),
            None => {
                let path = self.state_file.clone();
                let result =
                    tokio::task::spawn_blocking(move || persist::save(&path, &snapshot)).await;
                match result {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                }
            }
        };
        let ok = error.is_none();
        if let Ok(mut slot) = self.state_error.lock() {
            match (&error, slot.is_some()) {
                (Some(e), false) => {
                    tracing::error!(file = %self.state_file.display(), error = %e, "{} cannot be written: decisions are not applied until it can be", self.store())
                }
                (None, true) => {
                    tracing::info!(file = %self.state_file.display(), "{} can be written again", self.store())
                }
                _ => {}
            }
            *slot = error;
        }
        if ok {
            self.durable.fetch_max(generation, Ordering::AcqRel);
        }
        self.metrics
            .state_writes
            .get_or_create(&ByResult {
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        // Waiters are released even when the write failed; `flush` tells them.
        self.written.send_modify(|w| *w = (*w).max(generation));
    }

    /// The policies whose state changed since it was last written to etcd, written there
    /// (fenced by the leader's term).
    async fn write_etcd(
        &self,
        coordinator: &coordination::Coordinator,
        snapshot: &LiveSnapshot,
    ) -> Result<(), String> {
        // Nothing of a follower's is written (nothing it decides is applied either); with
        // shards, only the states of the shards this instance holds.
        let changed: Vec<(String, Vec<u8>)> = {
            let written = self.in_etcd.lock().map_err(|e| e.to_string())?;
            let held =
                |name: &str| coordinator.holds(coordination::shard_of(name, coordinator.shards));
            let slots = snapshot
                .slots
                .iter()
                .filter(|slot| coordinator.holds(slot.shard))
                .filter_map(|slot| Some((&slot.name, slot.state(|p| serde_json::to_vec(p)).ok()?)));
            let restored = snapshot
                .restored
                .iter()
                .filter(|(name, _)| held(name))
                .filter_map(|(name, state)| Some((name, serde_json::to_vec(state).ok()?)));
            slots
                .chain(restored)
                .filter(|(name, bytes)| written.get(*name) != Some(bytes))
                .map(|(name, bytes)| (name.clone(), bytes))
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        coordinator.save(&changed).await?;
        if let Ok(mut written) = self.in_etcd.lock() {
            written.extend(changed);
        }
        Ok(())
    }

    /// Where state is written, for messages: "the state file", or "the state in etcd".
    pub fn store(&self) -> &'static str {
        if self.coordinator.get().is_some() {
            "the state in etcd"
        } else {
            "the state file"
        }
    }

    /// Whether this instance may tick at all: always with the state file; on etcd,
    /// while it leads (with shards: leads at least one).
    pub fn may_act(&self) -> bool {
        self.coordinator.get().is_none_or(|c| c.leads())
    }

    /// Whether a decision of this policy, written under this instance's fence, may be
    /// applied: on etcd, while the instance still holds the policy's shard.
    fn may_apply(&self, slot: &Slot) -> bool {
        self.coordinator.get().is_none_or(|c| c.holds(slot.shard))
    }

    /// Newly elected for a shard (the only one, without shards): take its policies'
    /// states as the last leader left them in etcd, before their first tick.
    pub async fn adopt(
        &self,
        coordinator: &coordination::Coordinator,
        shard: u32,
    ) -> Result<(), String> {
        let mut states = coordinator.load(shard).await?;
        let written: HashMap<String, Vec<u8>> = states
            .iter()
            .filter_map(|(name, state)| Some((name.clone(), serde_json::to_vec(state).ok()?)))
            .collect();
        for slot in self.all_slots().into_iter().filter(|s| s.shard == shard) {
            let mut run = slot.run.lock().await;
            let state = states.remove(&slot.name).unwrap_or_default();
            run.needs_history = true;
            run.restored_tick = state.ticked_at;
            run.schedules = Schedules::new();
            slot.state(|p| *p = state);
            slot.next_due.store(now_ms(), Ordering::Release);
        }
        if let Ok(mut restored) = self.restored.lock() {
            restored.retain(|name, _| coordination::shard_of(name, coordinator.shards) != shard);
            restored.extend(states);
        }
        if let Ok(mut in_etcd) = self.in_etcd.lock() {
            in_etcd.retain(|name, _| coordination::shard_of(name, coordinator.shards) != shard);
            in_etcd.extend(written);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// The final write at shutdown.
    pub async fn persist_final(&self) {
        let generation = self.dirty.fetch_add(1, Ordering::AcqRel) + 1;
        self.write_now(generation).await;
    }

    pub fn file_statuses(&self) -> Vec<FileStatus> {
        self.files
            .lock()
            .map(|f| f.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The service's side of coordination: a won shard's states adopted, states written
/// before a shard is handed over.
struct Elected(Arc<Service>);

impl coordination::Hooks for Elected {
    fn adopt(&self, shard: u32) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let coordinator = self
                .0
                .coordinator
                .get()
                .ok_or_else(|| "no coordinator".to_string())?;
            self.0.adopt(coordinator, shard).await
        })
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.0.flush().await;
        })
    }
}

/// Run the service until SIGTERM or SIGINT: load policies, serve HTTP, watch files,
/// tick. Returns the process exit code.
pub async fn run(loaded: Loaded) -> Result<(), StartError> {
    let service = Service::new(loaded)?;
    let stopping_flag = Arc::new(AtomicBool::new(false));
    let campaign = match service.loaded.config.coordination.etcd() {
        None => None,
        Some(etcd) => {
            let password = match &etcd.password_file {
                Some(path) => Some(
                    crate::input::read_text(
                        &service.loaded.resolve(path),
                        crate::input::caps::SECRET,
                    )
                    .map_err(|e| {
                        StartError(format!(
                            "coordination: cannot read the etcd password file: {e}"
                        ))
                    })?
                    .trim_end()
                    .to_string(),
                ),
                None => None,
            };
            let tls = match &etcd.tls {
                Some(tls) => Some(
                    coordination::tls_options(tls, |p| service.loaded.resolve(p))
                        .map_err(StartError)?,
                ),
                None => None,
            };
            let coordinator = Arc::new(
                coordination::Coordinator::connect(
                    &etcd,
                    etcd.api(&service.loaded.config.listen),
                    password,
                    tls,
                )
                .await
                .map_err(StartError)?,
            );
            let _ = service.coordinator.set(coordinator.clone());
            let hooks = Arc::new(Elected(service.clone()));
            let flag = stopping_flag.clone();
            Some(tokio::spawn(coordinator.campaign(flag, hooks)))
        }
    };
    let listener = tokio::net::TcpListener::bind(&service.loaded.config.listen)
        .await
        .map_err(|e| {
            StartError(format!(
                "cannot listen on {}: {e}",
                service.loaded.config.listen
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| StartError(e.to_string()))?;
    // Watch first, so that no change between the first load and the watch is missed.
    let _watcher = policies::watch(&service).map_err(StartError)?;
    policies::reload(&service).await;
    let listener = listener
        .into_std()
        .map_err(|e| StartError(format!("cannot serve HTTP: {e}")))?;
    http::spawn(service.clone(), listener).map_err(StartError)?;
    let writer = tokio::spawn({
        let s = service.clone();
        async move { s.write_state().await }
    });
    let scheduler = tokio::spawn({
        let s = service.clone();
        async move { s.schedule().await }
    });
    service.ready.store(true, Ordering::Release);
    tracing::info!(
        listen = %address,
        policies = service.all_slots().len(),
        state_file = %service.state_file.display(),
        dry_run = service.loaded.config.dry_run,
        "policyctl serve is ready"
    );

    shutdown_signal().await;
    tracing::info!("stopping: no new ticks; waiting for in-flight actuator calls");
    service.ready.store(false, Ordering::Release);
    service.stopping.store(true, Ordering::Release);
    service.wake.notify_one();
    let _ = scheduler.await;
    let grace = service.loaded.config.shutdown_grace();
    if !service.drain(grace).await {
        tracing::warn!(
            "in-flight ticks did not finish within {grace:?}; their decisions were written before the calls"
        );
    }
    writer.abort();
    match service.coordinator.get() {
        Some(coordinator) => {
            // The last write, while the lease is still kept alive; then the lease goes.
            if coordinator.leads() {
                service.persist_final().await;
            }
            stopping_flag.store(true, Ordering::Release);
            if let Some(campaign) = campaign {
                campaign.abort();
            }
            coordinator.resign().await;
            tracing::info!("stopped");
        }
        None => {
            service.persist_final().await;
            tracing::info!("stopped; state written to {}", service.state_file.display());
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A long-running service raises its soft limit on open descriptors to the hard limit
/// (as Go's runtime does for every program): the plugins' share of descriptors is
/// sized from it, and the rest stays reserved for the service itself.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit struct of ours.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
