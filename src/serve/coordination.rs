//! Several `serve` instances on etcd (v3 API, through etcd-client): one leader, elected
//! by a transaction that creates `PREFIX/leader` under the instance's lease; each
//! policy's state under `PREFIX/state/NAME`. Every state write is a transaction fenced
//! on the leader key's create revision: once the lease is gone (a dead, partitioned or
//! paused leader), the key is gone or another's, and the write fails, so the decision it
//! carried is not applied. Besides the fence, the leader keeps its own deadline (the
//! send time of its last acknowledged keep-alive plus the TTL) and stops actuating past
//! it, without waiting to hear from etcd.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use super::config::EtcdConfig;
use super::persist::PolicyState;

/// At most this many writes in one transaction (etcd's default limit is 128 operations).
const OPS_PER_TXN: usize = 100;

/// What `/v1/status` tells about coordination.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub id: String,
    pub leader: bool,
    pub leader_id: Option<String>,
    /// Why this instance does not lead, or what went wrong last.
    pub note: Option<String>,
}

/// This instance's term as leader.
#[derive(Debug, Clone, Copy)]
struct Term {
    /// The leader key's create revision: the fence of every write.
    revision: i64,
    lease: i64,
    /// Until when the lease is surely alive: the send time of the last acknowledged
    /// grant or keep-alive, plus the TTL.
    valid_until: Instant,
}

pub struct Coordinator {
    pub id: String,
    client: Client,
    prefix: String,
    ttl: Duration,
    term: Mutex<Option<Term>>,
    leader_id: Mutex<Option<String>>,
    note: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The TLS settings of `coordination: Etcd(tls: …)`, with their files read (paths
/// resolved by `resolve`).
pub fn tls_options(
    tls: &super::config::EtcdTls,
    resolve: impl Fn(&std::path::Path) -> std::path::PathBuf,
) -> Result<etcd_client::TlsOptions, String> {
    let read = |path: &std::path::Path| {
        let path = resolve(path);
        crate::input::read_text(&path, crate::input::caps::SECRET)
            .map_err(|e| format!("coordination: cannot read `{}`: {e}", path.display()))
    };
    let mut options = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca_file)?));
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}

/// The instance id when the configuration names none: host name and process id.
pub fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

impl Coordinator {
    /// A client for the endpoints; connections are made lazily, so an etcd that is down
    /// at start-up does not stop the instance from serving reads.
    pub async fn connect(
        config: &EtcdConfig,
        password: Option<String>,
        tls: Option<etcd_client::TlsOptions>,
    ) -> Result<Coordinator, String> {
        let ttl = Duration::from_secs(config.lease_ttl_s.max(2));
        let mut options = ConnectOptions::new()
            .with_connect_timeout(ttl / 3)
            .with_timeout(ttl / 3)
            .with_keep_alive(ttl / 3, ttl / 3);
        if let (Some(user), Some(password)) = (&config.user, password) {
            options = options.with_user(user.clone(), password);
        }
        if let Some(tls) = tls {
            options = options.with_tls(tls);
        }
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| format!("cannot reach etcd at {}: {e}", config.endpoints.join(", ")))?;
        let mut prefix = config.prefix.clone();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Coordinator {
            id: config.id.clone().unwrap_or_else(default_id),
            client,
            prefix,
            ttl,
            term: Mutex::new(None),
            leader_id: Mutex::new(None),
            note: Mutex::new(Some("not elected yet".into())),
        })
    }

    fn leader_key(&self) -> String {
        format!("{}leader", self.prefix)
    }

    fn state_key(&self, policy: &str) -> String {
        format!("{}state/{policy}", self.prefix)
    }

    /// Whether this instance leads now, by its own clock (no request to etcd).
    pub fn leads(&self) -> bool {
        lock(&self.term).is_some_and(|t| Instant::now() < t.valid_until)
    }

    pub fn status(&self) -> Status {
        let leader = self.leads();
        Status {
            id: self.id.clone(),
            leader,
            leader_id: if leader {
                Some(self.id.clone())
            } else {
                lock(&self.leader_id).clone()
            },
            note: lock(&self.note).clone(),
        }
    }

    fn set_note(&self, note: Option<String>) {
        *lock(&self.note) = note;
    }

    /// Every policy's state as the last leader left it.
    pub async fn load(&self) -> Result<BTreeMap<String, PolicyState>, String> {
        let mut client = self.client.clone();
        let prefix = format!("{}state/", self.prefix);
        let response = tokio::time::timeout(
            self.ttl,
            client.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
        )
        .await
        .map_err(|_| "etcd did not answer in time".to_string())?
        .map_err(|e| format!("cannot read the state from etcd: {e}"))?;
        let mut out = BTreeMap::new();
        for kv in response.kvs() {
            let Ok(key) = kv.key_str() else { continue };
            let name = key.strip_prefix(&prefix).unwrap_or(key).to_string();
            match serde_json::from_slice::<PolicyState>(kv.value()) {
                Ok(state) => {
                    out.insert(name, state);
                }
                Err(e) => {
                    tracing::error!(policy = %name, "the state in etcd is unreadable; the policy starts afresh: {e}")
                }
            }
        }
        Ok(out)
    }

    /// Write policies' states, fenced by this instance's term. An error when this
    /// instance does not lead (any more), or etcd did not take them.
    pub async fn save(&self, changed: &[(String, Vec<u8>)]) -> Result<(), String> {
        let Some(term) = *lock(&self.term) else {
            return Err("this instance does not lead".into());
        };
        if Instant::now() >= term.valid_until {
            return Err("this instance's lease may have expired".into());
        }
        let mut client = self.client.clone();
        for batch in changed.chunks(OPS_PER_TXN) {
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|(name, bytes)| TxnOp::put(self.state_key(name), bytes.clone(), None))
                .collect();
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    self.leader_key(),
                    CompareOp::Equal,
                    term.revision,
                )])
                .and_then(ops);
            let response = tokio::time::timeout(self.ttl / 2, client.txn(txn))
                .await
                .map_err(|_| "etcd did not answer in time".to_string())?
                .map_err(|e| format!("etcd refused the write: {e}"))?;
            if !response.succeeded() {
                self.step_down("another instance leads now");
                return Err("another instance leads now (the write was fenced off)".into());
            }
        }
        Ok(())
    }

    fn step_down(&self, why: &str) {
        let had = lock(&self.term).take().is_some();
        if had {
            tracing::warn!(id = %self.id, "leadership lost: {why}; no more ticks or actuator calls here");
        }
        self.set_note(Some(why.to_string()));
    }

    /// Campaign for leadership until `stopping`: `on_elected` runs (and must finish)
    /// before this instance counts as the leader.
    pub async fn campaign<F, Fut>(
        self: Arc<Self>,
        stopping: Arc<std::sync::atomic::AtomicBool>,
        on_elected: F,
    ) where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let pause = self.ttl / 3;
        while !stopping.load(std::sync::atomic::Ordering::Acquire) {
            match self.try_lead(&on_elected).await {
                Ok(Some(term)) => self.hold(term, &stopping).await,
                Ok(None) => {}
                Err(e) => {
                    self.set_note(Some(e.clone()));
                    tracing::warn!(id = %self.id, "coordination: {e}");
                }
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: a lease, and the leader key if no one holds it.
    async fn try_lead<F, Fut>(&self, on_elected: &F) -> Result<Option<Term>, String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut client = self.client.clone();
        let key = self.leader_key();
        // Someone leads: no lease is taken (a campaign must not leave leases behind).
        let current = tokio::time::timeout(self.ttl / 3, client.get(key.clone(), None))
            .await
            .map_err(|_| "etcd did not answer in time".to_string())?
            .map_err(|e| format!("cannot reach etcd: {e}"))?;
        if let Some(kv) = current.kvs().first() {
            let holder = kv.value_str().unwrap_or("?").to_string();
            self.set_note(Some(format!("{holder} leads")));
            *lock(&self.leader_id) = Some(holder);
            return Ok(None);
        }
        let sent = Instant::now();
        let lease = tokio::time::timeout(
            self.ttl / 3,
            client.lease_grant(self.ttl.as_secs() as i64, None),
        )
        .await
        .map_err(|_| "etcd did not answer in time".to_string())?
        .map_err(|e| format!("cannot take a lease: {e}"))?;
        let granted = Duration::from_secs(lease.ttl().max(0) as u64).min(self.ttl);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                key.clone(),
                self.id.clone(),
                Some(PutOptions::new().with_lease(lease.id())),
            )])
            .or_else(vec![TxnOp::get(key.clone(), None)]);
        let response = match tokio::time::timeout(self.ttl / 3, client.txn(txn)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let _ = client.lease_revoke(lease.id()).await;
                return Err(format!("cannot campaign: {e}"));
            }
            Err(_) => {
                let _ = client.lease_revoke(lease.id()).await;
                return Err("etcd did not answer in time".into());
            }
        };
        if !response.succeeded() {
            let _ = client.lease_revoke(lease.id()).await;
            let holder = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .and_then(|kv| kv.value_str().ok().map(str::to_string)),
                _ => None,
            });
            *lock(&self.leader_id) = holder;
            return Ok(None);
        }
        let revision = response.header().map_or(0, |h| h.revision());
        let term = Term {
            revision,
            lease: lease.id(),
            valid_until: sent + granted,
        };
        // The state the last leader left, into place before the first tick.
        if let Err(e) = on_elected().await {
            let _ = client.delete(key, None).await;
            let _ = client.lease_revoke(lease.id()).await;
            return Err(format!("elected, but {e}; stepped down"));
        }
        if Instant::now() >= term.valid_until {
            return Err("elected, but the lease ran out while loading the state".into());
        }
        *lock(&self.term) = Some(term);
        *lock(&self.leader_id) = Some(self.id.clone());
        self.set_note(None);
        tracing::info!(id = %self.id, revision, "leadership won: this instance ticks and actuates");
        Ok(Some(term))
    }

    /// Keep the lease alive until it cannot be, or the service stops.
    async fn hold(&self, term: Term, stopping: &std::sync::atomic::AtomicBool) {
        let mut client = self.client.clone();
        let every = self.ttl / 3;
        let (mut keeper, mut stream) = match client.lease_keep_alive(term.lease).await {
            Ok(pair) => pair,
            Err(e) => {
                self.step_down(&format!("cannot keep the lease alive: {e}"));
                return;
            }
        };
        while !stopping.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(every).await;
            if lock(&self.term).is_none() {
                return; // stepped down elsewhere (a fenced write failed)
            }
            let sent = Instant::now();
            let answered = tokio::time::timeout(every, async {
                keeper.keep_alive().await.map_err(|e| e.to_string())?;
                stream.message().await.map_err(|e| e.to_string())
            })
            .await;
            match answered {
                Ok(Ok(Some(response))) if response.ttl() > 0 => {
                    let granted = Duration::from_secs(response.ttl() as u64).min(self.ttl);
                    if let Some(t) = lock(&self.term).as_mut() {
                        t.valid_until = sent + granted;
                    }
                }
                Ok(Ok(_)) => {
                    self.step_down("the lease expired");
                    return;
                }
                Ok(Err(e)) => {
                    self.set_note(Some(format!("keep-alive failed: {e}")));
                    if let Ok(pair) = client.lease_keep_alive(term.lease).await {
                        (keeper, stream) = pair;
                    }
                }
                Err(_) => self.set_note(Some("keep-alive unanswered".into())),
            }
            if !self.leads() {
                self.step_down("the lease could not be renewed in time (is etcd reachable?)");
                return;
            }
        }
    }

    /// At shutdown, after the last write: give the leadership up at once, so that
    /// another instance takes over now.
    pub async fn resign(&self) {
        let term = lock(&self.term).take();
        if let Some(term) = term {
            let mut client = self.client.clone();
            let _ = tokio::time::timeout(self.ttl / 3, client.lease_revoke(term.lease)).await;
            tracing::info!(id = %self.id, "leadership given up");
        }
    }
}
