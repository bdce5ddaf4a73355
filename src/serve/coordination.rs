//! Several `serve` instances on etcd (v3 API, through etcd-client).
//!
//! Each instance keeps one lease for as long as it can, and registers under it as a
//! member (`PREFIX/members/ID`). The policies are split into `shards` parts by
//! [`shard_of`]; each part has a leader key (`PREFIX/leader` with one shard,
//! `PREFIX/shards/K` with several), created by a transaction under the holder's lease.
//! An instance takes free shards up to its fair share (the shard count over the live
//! members, rounded up) and gives one back, after writing its state, when it holds more
//! (a member joined), so 3 instances each lead a third, and the shards of a dead one go
//! to the others once its lease expires. With one shard this is plain leader election.
//!
//! Each policy's state lives under `PREFIX/state/NAME`. Every state write is a
//! transaction fenced on the create revision of its shard's key: once the lease is gone
//! (a dead, partitioned or paused instance), the key is gone or another's, and the write
//! fails, so the decision it carried is not applied. Besides the fence, the instance
//! keeps its own deadline (the send time of its last acknowledged keep-alive plus the
//! TTL) and stops ticking and actuating past it, without waiting to hear from etcd.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp,
};
use futures::future::BoxFuture;

use super::config::EtcdConfig;
use super::persist::PolicyState;

/// At most this many writes in one transaction (etcd's default limit is 128 operations).
const OPS_PER_TXN: usize = 100;

/// States read from etcd per request when a shard is adopted.
const PAGE: usize = 1000;

/// The shard of a policy among `shards`: FNV-1a of its name, modulo the count. Stable
/// across versions and instances (every instance must agree).
pub fn shard_of(policy: &str, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in policy.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shards)) as u32
}

/// What `/v1/status` tells about coordination.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub id: String,
    /// Whether this instance leads (with shards: leads at least one).
    pub leader: bool,
    /// Who leads (with shards: who leads shard 0).
    pub leader_id: Option<String>,
    /// With `shards` above 1: the count, which this instance leads, and who leads each.
    pub shards: Option<Shards>,
    /// The live instances, as registered in etcd.
    pub members: Vec<String>,
    /// Why this instance does not lead, or what went wrong last.
    pub note: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Shards {
    pub count: u32,
    pub owned: Vec<u32>,
    /// Each led shard's leader (`"3": "b"`); a shard no one leads is absent.
    pub leaders: BTreeMap<u32, String>,
}

/// This instance's lease, kept alive for as long as it lives.
#[derive(Debug, Clone, Copy)]
struct Session {
    lease: i64,
    /// Until when the lease is surely alive: the send time of the last acknowledged
    /// grant or keep-alive, plus the TTL.
    valid_until: Instant,
}

/// A shard this instance holds the key of.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The key's create revision: the fence of every write of this shard's policies.
    revision: i64,
    /// False while the shard is being handed over: its state is written, but nothing new
    /// is ticked.
    ticking: bool,
}

/// What the service does when a shard comes or goes.
pub trait Hooks: Send + Sync {
    /// Take the state of the shard's policies from etcd, before its first tick.
    fn adopt(&self, shard: u32) -> BoxFuture<'_, Result<(), String>>;
    /// Write every changed state now (before a shard is handed over).
    fn flush(&self) -> BoxFuture<'_, ()>;
}

pub struct Coordinator {
    pub id: String,
    client: Client,
    prefix: String,
    ttl: Duration,
    pub shards: u32,
    /// This instance's API, as the others reach it (registered with the membership).
    api: String,
    session: Mutex<Option<Session>>,
    held: Mutex<BTreeMap<u32, Held>>,
    leaders: Mutex<BTreeMap<u32, String>>,
    members: Mutex<Vec<String>>,
    /// Each member's API, as it registered it.
    apis: Mutex<BTreeMap<String, String>>,
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

/// This machine's host name, when it can be read.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The instance id when the configuration names none: host name and process id.
pub fn default_id() -> String {
    let host = host_name().unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
}

impl Coordinator {
    /// A client for the endpoints; connections are made lazily, so an etcd that is down
    /// at start-up does not stop the instance from serving reads.
    pub async fn connect(
        config: &EtcdConfig,
        api: String,
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
            shards: config.shards.max(1),
            api,
            session: Mutex::new(None),
            held: Mutex::new(BTreeMap::new()),
            leaders: Mutex::new(BTreeMap::new()),
            members: Mutex::new(Vec::new()),
            apis: Mutex::new(BTreeMap::new()),
            note: Mutex::new(Some("not elected yet".into())),
        })
    }

    fn shard_key(&self, shard: u32) -> String {
        if self.shards == 1 {
            format!("{}leader", self.prefix)
        } else {
            format!("{}shards/{shard}", self.prefix)
        }
    }

    fn shard_prefix(&self) -> String {
        if self.shards == 1 {
            format!("{}leader", self.prefix)
        } else {
            format!("{}shards/", self.prefix)
        }
    }

    fn member_key(&self) -> String {
        format!("{}members/{}", self.prefix, self.id)
    }

    fn state_key(&self, policy: &str) -> String {
        format!("{}state/{policy}", self.prefix)
    }

    /// This instance's session, while its lease is surely alive (by its own clock).
    fn alive(&self) -> bool {
        lock(&self.session).is_some_and(|s| Instant::now() < s.valid_until)
    }

    /// Whether this instance leads at least one shard now (no request to etcd).
    pub fn leads(&self) -> bool {
        self.alive() && lock(&self.held).values().any(|h| h.ticking)
    }

    /// Whether this instance ticks `policy` now: it leads the policy's shard.
    pub fn ticks(&self, shard: u32) -> bool {
        self.alive() && lock(&self.held).get(&shard).is_some_and(|h| h.ticking)
    }

    /// Which shards this instance ticks now, by index (for a pass over many policies).
    pub fn ticking(&self) -> Vec<bool> {
        let mut out = vec![false; self.shards as usize];
        if self.alive() {
            for (shard, h) in lock(&self.held).iter() {
                if let Some(slot) = out.get_mut(*shard as usize) {
                    *slot = h.ticking;
                }
            }
        }
        out
    }

    /// Whether a decision of the shard, already written under this instance's fence,
    /// may still be applied: the instance still holds the shard's key (even while
    /// handing it over).
    pub fn holds(&self, shard: u32) -> bool {
        self.alive() && lock(&self.held).contains_key(&shard)
    }

    pub fn status(&self) -> Status {
        let owned: Vec<u32> = if self.alive() {
            lock(&self.held)
                .iter()
                .filter(|(_, h)| h.ticking)
                .map(|(s, _)| *s)
                .collect()
        } else {
            Vec::new()
        };
        let mut leaders = lock(&self.leaders).clone();
        for shard in &owned {
            leaders.insert(*shard, self.id.clone());
        }
        Status {
            id: self.id.clone(),
            leader: !owned.is_empty(),
            leader_id: leaders.get(&0).cloned(),
            shards: (self.shards > 1).then_some(Shards {
                count: self.shards,
                owned,
                leaders,
            }),
            members: lock(&self.members).clone(),
            note: lock(&self.note).clone(),
        }
    }

    /// The API of the instance that leads `shard`, as it registered it (None while no
    /// one leads it, or its leader is this instance).
    pub fn leader_api(&self, shard: u32) -> Option<(String, String)> {
        let leader = lock(&self.leaders).get(&shard).cloned()?;
        if leader == self.id {
            return None;
        }
        let api = lock(&self.apis)
            .get(&leader)
            .cloned()
            .filter(|a| !a.is_empty())?;
        Some((leader, api))
    }

    fn set_note(&self, note: Option<String>) {
        *lock(&self.note) = note;
    }

    /// The state of every policy of `shard` as its last leader left it. Read in pages
    /// of [`PAGE`] keys, so that a large fleet's states never make one answer larger
    /// than a gRPC message may be (4 MiB by default).
    pub async fn load(&self, shard: u32) -> Result<BTreeMap<String, PolicyState>, String> {
        let mut client = self.client.clone();
        let prefix = format!("{}state/", self.prefix);
        // The end of the prefix's range: its last byte plus one ('/' + 1 = '0').
        let mut end = prefix.clone().into_bytes();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut from = prefix.clone().into_bytes();
        let mut out = BTreeMap::new();
        loop {
            let response = tokio::time::timeout(
                self.ttl,
                client.get(
                    from.clone(),
                    Some(
                        GetOptions::new()
                            .with_range(end.clone())
                            .with_limit(PAGE as i64),
                    ),
                ),
            )
            .await
            .map_err(|_| "etcd did not answer in time".to_string())?
            .map_err(|e| format!("cannot read the state from etcd: {e}"))?;
            for kv in response.kvs() {
                let Ok(key) = kv.key_str() else { continue };
                let name = key.strip_prefix(&prefix).unwrap_or(key).to_string();
                if shard_of(&name, self.shards) != shard {
                    continue;
                }
                match serde_json::from_slice::<PolicyState>(kv.value()) {
                    Ok(state) => {
                        out.insert(name, state);
                    }
                    Err(e) => {
                        tracing::error!(policy = %name, "the state in etcd is unreadable; the policy starts afresh: {e}")
                    }
                }
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    // The next page starts just after the last key read.
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// Write policies' states, each fenced by its shard's key. Policies of shards this
    /// instance does not hold are not written; an error when one of them was asked, or
    /// etcd did not take a write.
    pub async fn save(&self, changed: &[(String, Vec<u8>)]) -> Result<(), String> {
        if !self.alive() {
            return Err("this instance's lease may have expired".into());
        }
        let held = lock(&self.held).clone();
        let mut by_shard: BTreeMap<u32, Vec<&(String, Vec<u8>)>> = BTreeMap::new();
        let mut foreign = 0usize;
        for entry in changed {
            let shard = shard_of(&entry.0, self.shards);
            if held.contains_key(&shard) {
                by_shard.entry(shard).or_default().push(entry);
            } else {
                foreign += 1;
            }
        }
        let mut client = self.client.clone();
        for (shard, entries) in by_shard {
            let revision = held[&shard].revision;
            for batch in entries.chunks(OPS_PER_TXN) {
                let ops: Vec<TxnOp> = batch
                    .iter()
                    .map(|(name, bytes)| TxnOp::put(self.state_key(name), bytes.clone(), None))
                    .collect();
                let txn = Txn::new()
                    .when(vec![Compare::create_revision(
                        self.shard_key(shard),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then(ops);
                let response = tokio::time::timeout(self.ttl / 2, client.txn(txn))
                    .await
                    .map_err(|_| "etcd did not answer in time".to_string())?
                    .map_err(|e| format!("etcd refused the write: {e}"))?;
                if !response.succeeded() {
                    self.lose(shard, "another instance leads it now");
                    return Err(format!(
                        "{} no longer leads {} (the write was fenced off)",
                        self.id,
                        self.shard_name(shard)
                    ));
                }
            }
        }
        if foreign > 0 {
            return Err(format!(
                "{foreign} policies' states belong to shards this instance does not lead"
            ));
        }
        Ok(())
    }

    fn shard_name(&self, shard: u32) -> String {
        if self.shards == 1 {
            "the leadership".into()
        } else {
            format!("shard {shard}")
        }
    }

    /// A shard lost (its key is gone or another's).
    fn lose(&self, shard: u32, why: &str) {
        if lock(&self.held).remove(&shard).is_some() {
            tracing::warn!(id = %self.id, shard, "{} lost: {why}; no more ticks or actuator calls for it here", self.shard_name(shard));
        }
        self.set_note(Some(format!("{} lost: {why}", self.shard_name(shard))));
    }

    /// Every shard lost at once (the lease is gone or cannot be renewed).
    fn lose_all(&self, why: &str) {
        let had = std::mem::take(&mut *lock(&self.held));
        *lock(&self.session) = None;
        if !had.is_empty() {
            tracing::warn!(id = %self.id, shards = ?had.keys().collect::<Vec<_>>(), "leadership lost: {why}; no more ticks or actuator calls here");
        }
        self.set_note(Some(why.to_string()));
    }

    /// Keep a lease and campaign for a fair share of the shards until `stopping`.
    /// A shard counts as led only once `hooks.adopt` has put its state in place. The
    /// lease is kept alive by a task of its own, so that a long adoption or hand-over
    /// (a large shard's states) never delays a keep-alive.
    pub async fn campaign(
        self: Arc<Self>,
        stopping: Arc<std::sync::atomic::AtomicBool>,
        hooks: Arc<dyn Hooks>,
    ) {
        let pause = self.ttl / 3;
        let keeper = tokio::spawn(self.clone().keep_alive(stopping.clone()));
        while !stopping.load(std::sync::atomic::Ordering::Acquire) {
            if let Err(e) = self.round(hooks.as_ref()).await {
                self.set_note(Some(e.clone()));
                tracing::warn!(id = %self.id, "coordination: {e}");
            }
            tokio::time::sleep(pause).await;
        }
        keeper.abort();
    }

    /// Renew this instance's lease every TTL/3 while it has one; when it cannot be
    /// renewed in time, or has expired, every shard is lost at once.
    async fn keep_alive(self: Arc<Self>, stopping: Arc<std::sync::atomic::AtomicBool>) {
        let every = self.ttl / 3;
        let mut client = self.client.clone();
        let mut stream: Option<(i64, LeaseKeeper, LeaseKeepAliveStream)> = None;
        while !stopping.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(every).await;
            let Some(session) = *lock(&self.session) else {
                stream = None;
                continue;
            };
            if stream
                .as_ref()
                .is_none_or(|(lease, _, _)| *lease != session.lease)
            {
                stream = tokio::time::timeout(every, client.lease_keep_alive(session.lease))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|(k, s)| (session.lease, k, s));
            }
            let sent = Instant::now();
            let renewed = match stream.as_mut() {
                Some((_, k, s)) => tokio::time::timeout(every, async {
                    k.keep_alive().await.map_err(|e| e.to_string())?;
                    s.message().await.map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|_| Err("keep-alive unanswered".into())),
                None => Err("no keep-alive stream".into()),
            };
            match renewed {
                Ok(Some(r)) if r.ttl() > 0 => {
                    let granted = Duration::from_secs(r.ttl() as u64).min(self.ttl);
                    if let Some(s) = lock(&self.session).as_mut()
                        && s.lease == session.lease
                    {
                        s.valid_until = sent + granted;
                    }
                }
                Ok(_) => {
                    stream = None;
                    self.lose_all("the lease expired");
                }
                Err(e) => {
                    // A new stream next time, while the lease may still live.
                    stream = None;
                    if self.alive() {
                        self.set_note(Some(format!("keep-alive failed: {e}")));
                    } else {
                        self.lose_all(
                            "the lease could not be renewed in time (is etcd reachable?)",
                        );
                    }
                }
            }
        }
    }

    /// One round: take a lease when there is none, look at who holds what, take or
    /// give back shards.
    async fn round(&self, hooks: &dyn Hooks) -> Result<(), String> {
        let mut client = self.client.clone();
        let timeout = self.ttl / 3;
        let answer = |what: &'static str| move |e: etcd_client::Error| format!("{what}: {e}");

        // A lease (with the member key) when there is none.
        if !self.alive() {
            if lock(&self.session).is_some() {
                self.lose_all("the lease could not be renewed in time (is etcd reachable?)");
            }
            let sent = Instant::now();
            let lease =
                tokio::time::timeout(timeout, client.lease_grant(self.ttl.as_secs() as i64, None))
                    .await
                    .map_err(|_| "etcd did not answer in time".to_string())?
                    .map_err(answer("cannot take a lease"))?;
            let granted = Duration::from_secs(lease.ttl().max(0) as u64).min(self.ttl);
            let put = tokio::time::timeout(
                timeout,
                client.put(
                    self.member_key(),
                    serde_json::json!({ "id": self.id, "api": self.api }).to_string(),
                    Some(PutOptions::new().with_lease(lease.id())),
                ),
            )
            .await;
            if !matches!(put, Ok(Ok(_))) {
                let _ = client.lease_revoke(lease.id()).await;
                return Err("cannot register as a member".into());
            }
            *lock(&self.session) = Some(Session {
                lease: lease.id(),
                valid_until: sent + granted,
            });
        }
        let Some(session) = *lock(&self.session) else {
            return Ok(());
        };

        // Who is there, and who holds what.
        let members = tokio::time::timeout(
            timeout,
            client.get(
                format!("{}members/", self.prefix),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await
        .map_err(|_| "etcd did not answer in time".to_string())?
        .map_err(answer("cannot read the members"))?;
        let mut apis = BTreeMap::new();
        for kv in members.kvs() {
            // `{"id", "api"}`; an id alone is accepted too.
            let Ok(text) = kv.value_str() else { continue };
            let value: serde_json::Value =
                serde_json::from_str(text).unwrap_or_else(|_| serde_json::json!({ "id": text }));
            if let Some(id) = value["id"].as_str() {
                apis.insert(
                    id.to_string(),
                    value["api"].as_str().unwrap_or_default().to_string(),
                );
            }
        }
        let members: Vec<String> = apis.keys().cloned().collect();
        *lock(&self.apis) = apis;
        let keys = tokio::time::timeout(
            timeout,
            client.get(self.shard_prefix(), Some(GetOptions::new().with_prefix())),
        )
        .await
        .map_err(|_| "etcd did not answer in time".to_string())?
        .map_err(answer("cannot read the shard leaders"))?;
        let mut leaders: BTreeMap<u32, (String, i64)> = BTreeMap::new();
        for kv in keys.kvs() {
            let Ok(key) = kv.key_str() else { continue };
            let shard = (0..self.shards).find(|s| self.shard_key(*s) == key);
            if let (Some(shard), Ok(holder)) = (shard, kv.value_str()) {
                leaders.insert(shard, (holder.to_string(), kv.create_revision()));
            }
        }
        // A shard whose key is no longer ours is lost.
        let held: Vec<(u32, Held)> = lock(&self.held).iter().map(|(s, h)| (*s, *h)).collect();
        for (shard, h) in &held {
            if leaders.get(shard).map(|(_, r)| *r) != Some(h.revision) {
                self.lose(*shard, "its key is gone or another's");
            }
        }
        *lock(&self.leaders) = leaders
            .iter()
            .map(|(s, (holder, _))| (*s, holder.clone()))
            .collect();
        let fair = self.shards.div_ceil(members.len().max(1) as u32) as usize;
        *lock(&self.members) = members;
        let count = lock(&self.held).len();

        if count < fair {
            // Free shards, from a starting point of our own so that instances starting
            // together do not all race for the same one.
            let start = shard_of(&self.id, self.shards);
            let free: Vec<u32> = (0..self.shards)
                .map(|i| (start + i) % self.shards)
                .filter(|s| !leaders.contains_key(s))
                .take(fair - count)
                .collect();
            for shard in free {
                self.take(shard, session, hooks).await?;
            }
        } else if count > fair {
            // A member joined: hand over one shard, its state written first.
            let last = lock(&self.held).iter().next_back().map(|(s, h)| (*s, *h));
            if let Some((shard, h)) = last {
                lock(&self.held).insert(
                    shard,
                    Held {
                        ticking: false,
                        ..h
                    },
                );
                hooks.flush().await;
                let key = self.shard_key(shard);
                let release = Txn::new()
                    .when(vec![Compare::create_revision(
                        key.clone(),
                        CompareOp::Equal,
                        h.revision,
                    )])
                    .and_then(vec![TxnOp::delete(key, None)]);
                let _ = tokio::time::timeout(timeout, client.txn(release)).await;
                lock(&self.held).remove(&shard);
                tracing::info!(id = %self.id, shard, "shard handed over: more instances share the shards now");
            }
        }
        if lock(&self.held).values().any(|h| h.ticking) {
            self.set_note(None);
        } else {
            let note = match lock(&self.leaders).get(&0) {
                Some(holder) if self.shards == 1 => format!("{holder} leads"),
                _ => "leads no shard".to_string(),
            };
            self.set_note(Some(note));
        }
        Ok(())
    }

    /// Take a free shard: create its key under our lease, then adopt its state.
    async fn take(&self, shard: u32, session: Session, hooks: &dyn Hooks) -> Result<(), String> {
        let mut client = self.client.clone();
        let key = self.shard_key(shard);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                key.clone(),
                self.id.clone(),
                Some(PutOptions::new().with_lease(session.lease)),
            )]);
        let response = tokio::time::timeout(self.ttl / 3, client.txn(txn))
            .await
            .map_err(|_| "etcd did not answer in time".to_string())?
            .map_err(|e| format!("cannot campaign: {e}"))?;
        if !response.succeeded() {
            return Ok(()); // another took it first
        }
        let revision = response.header().map_or(0, |h| h.revision());
        // The state the last leader left, into place before the first tick.
        lock(&self.held).insert(
            shard,
            Held {
                revision,
                ticking: false,
            },
        );
        if let Err(e) = hooks.adopt(shard).await {
            lock(&self.held).remove(&shard);
            let release = Txn::new()
                .when(vec![Compare::create_revision(
                    key.clone(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then(vec![TxnOp::delete(key, None)]);
            let _ = client.txn(release).await;
            return Err(format!(
                "elected for {}, but {e}; stepped down",
                self.shard_name(shard)
            ));
        }
        if !self.alive() {
            lock(&self.held).remove(&shard);
            return Err("elected, but the lease ran out while loading the state".into());
        }
        lock(&self.held).insert(
            shard,
            Held {
                revision,
                ticking: true,
            },
        );
        lock(&self.leaders).insert(shard, self.id.clone());
        if self.shards == 1 {
            tracing::info!(id = %self.id, revision, "leadership won: this instance ticks and actuates");
        } else {
            tracing::info!(id = %self.id, shard, revision, "shard won: this instance ticks and actuates its policies");
        }
        Ok(())
    }

    /// At shutdown, after the last write: give the lease up at once, so that the other
    /// instances take over now.
    pub async fn resign(&self) {
        let had = std::mem::take(&mut *lock(&self.held));
        let session = lock(&self.session).take();
        if let Some(session) = session {
            let mut client = self.client.clone();
            let _ = tokio::time::timeout(self.ttl / 3, client.lease_revoke(session.lease)).await;
            if !had.is_empty() {
                tracing::info!(id = %self.id, "leadership given up");
            }
        }
    }
}
