//! `cargo bench --bench ha`: failover time on a real etcd cluster (three members of
//! Debian's `etcd-server` on 127.0.0.1) with three `serve` instances. A policy decides at
//! every tick; the leader is killed (-9) at a random moment of its tick, and the figure
//! is the time from the kill to the first decision of the new leader (the tick time in
//! its decision id, from the `record` plugin's log). `POLICYCTL_BENCH_KILLS` kills (10 by
//! default). The bound: lease TTL + the campaign's pause (TTL / 3) + one `every`.
//!
//! Then sharding: three instances with `shards: 3` over `POLICYCTL_BENCH_SHARDED`
//! policies (3,000 by default) at `every 15s`, on a fresh cluster: the state traffic to
//! etcd per second (puts, transactions, bytes received from clients, from the members'
//! own `/metrics`) and each instance's resident memory.

// Benchmark code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use support::etcd::{Cluster, Instances, leader_of, owned_shards, shard_of};
use support::wait_until;

const TTL: u64 = 2;

/// Tick times (Unix ms) of the recorded decisions.
fn decided_at(dir: &Path) -> Vec<i64> {
    std::fs::read_to_string(dir.join("out/d.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str()?.rsplit('@').next()?.parse().ok())
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = support::scratch("bench-ha");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    // The load differs at every second (1 to 60, looping): the policy decides at every
    // tick, so a new leader's first tick is a decision whatever the count it inherits.
    support::write(
        &dir.join("load.csv"),
        &support::per_second_trace("load", 60, |i| (i + 1).to_string()),
    );
    support::write(
        &dir.join("policies/flip.scale"),
        "policy \"flip\" {\n  target audit \"flip\"\n  replicas 1..60\n  every 1s\n  metric load = load \"load\"\n  desired = load\n  stabilize down 0s\n  limit up 100 per 1s\n  limit down 100 per 1s\n}\n",
    );
    let cluster = Cluster::start(&dir);
    let mut fleet = Instances::start(&dir, &cluster, &["a", "b", "c"], TTL, "");
    assert!(
        wait_until(20, || leader_of(&fleet.running).is_some()),
        "no leader"
    );

    let kills: usize = std::env::var("POLICYCTL_BENCH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(10);
    let mut failovers = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..kills {
        // A random moment within the leader's second.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(1500 + seed % 1000));
        let Some(leader) = leader_of(&fleet.running) else {
            assert!(wait_until(20, || leader_of(&fleet.running).is_some()));
            continue;
        };
        let killed = chrono::Utc::now().timestamp_millis();
        fleet.kill(leader);
        let started = Instant::now();
        let mut first = None;
        while started.elapsed() < Duration::from_secs(TTL * 5 + 5) {
            if let Some(at) = decided_at(&dir).into_iter().filter(|at| *at > killed).min() {
                first = Some(at);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let first = first.expect("no decision after the leader was killed");
        failovers.push(Duration::from_millis((first - killed) as u64));
        fleet.restart(leader);
    }
    failovers.sort();
    let median = failovers[failovers.len() / 2];
    let worst = *failovers.last().unwrap();
    println!(
        "failover, leader killed -> first decision of the new leader: median {:.2} s, worst {:.2} s over {} kills (lease_ttl_s {TTL}, every 1s, 3 instances, 3 etcd members)",
        median.as_secs_f64(),
        worst.as_secs_f64(),
        failovers.len()
    );
    let bound = Duration::from_millis(TTL * 1000 + TTL * 1000 / 3 + 1000 + 500);
    assert!(
        worst <= bound,
        "a failover took {worst:?}, above TTL + TTL/3 + every (+0.5 s): {bound:?}"
    );
    drop(fleet);
    drop(cluster);
    sharded();
}

/// The sum of a counter over its series in a Prometheus text exposition.
fn counter(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// etcd's counters, summed over the members: (puts, transactions, bytes from clients).
/// Every member applies every write, so puts and transactions are divided by the
/// member count; bytes are received by the member a client talks to.
fn etcd_counters(cluster: &Cluster) -> (f64, f64, f64) {
    let (mut puts, mut txns, mut bytes) = (0.0, 0.0, 0.0);
    for m in &cluster.members {
        let (_, body) = support::http("GET", m.client, "/metrics", &[], "");
        puts += counter(&body, "etcd_mvcc_put_total");
        txns += counter(&body, "etcd_mvcc_txn_total");
        bytes += counter(&body, "etcd_network_client_grpc_received_bytes_total");
    }
    let n = cluster.members.len() as f64;
    (puts / n, txns / n, bytes)
}

fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn sharded() {
    let count: usize = std::env::var("POLICYCTL_BENCH_SHARDED")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(3000);
    let dir = support::scratch("bench-ha-shards");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    support::write(
        &dir.join("load.csv"),
        &support::per_second_trace("q", 60, |i| (20 + (i % 7) * 3).to_string()),
    );
    for f in 0..count.div_ceil(common::service::PER_FILE) {
        let per = common::service::PER_FILE;
        let text: String = (f * per..((f + 1) * per).min(count))
            .map(|i| common::service::policy(i, "15s"))
            .collect();
        support::write(&dir.join(format!("policies/f{f:04}.scale")), &text);
    }
    let cluster = Cluster::start(&dir);
    let fleet = Instances::start(&dir, &cluster, &["a", "b", "c"], TTL, ", shards: 3");
    assert!(
        wait_until(180, || fleet
            .running
            .iter()
            .flatten()
            .all(|s| owned_shards(Some(s)).len() == 1)),
        "the shards were not spread one per instance"
    );
    // Two rounds to settle (every policy's first tick comes when it is adopted), then
    // 60 s measured: four rounds.
    std::thread::sleep(Duration::from_secs(30));
    let (p0, t0, b0) = etcd_counters(&cluster);
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let (p1, t1, b1) = etcd_counters(&cluster);
    let secs = measured.elapsed().as_secs_f64();
    let ticks_per_s = count as f64 / 15.0;
    // How late ticks start after their aligned due time: 300 policies, each asked of
    // the instance that leads its shard.
    let owners: Vec<Vec<u64>> = fleet
        .running
        .iter()
        .map(|s| owned_shards(s.as_ref()))
        .collect();
    let mut late: Vec<i64> = (0..count.min(300))
        .filter_map(|i| {
            let name = format!("p{i}");
            let owner = owners
                .iter()
                .position(|o| o.contains(&shard_of(&name, 3)))?;
            let body = fleet.running[owner]
                .as_ref()?
                .get(&format!("/v1/policies/{name}"))
                .1;
            let at = serde_json::from_str::<Value>(&body).ok()?["last"]["at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())?;
            Some(at.timestamp_millis().rem_euclid(15_000))
        })
        .collect();
    late.sort();
    let rss: Vec<String> = fleet
        .running
        .iter()
        .flatten()
        .map(|s| format!("{:.0}", rss_of(s.child.id())))
        .collect();
    println!(
        "sharded: {count} policies at every 15s ({ticks_per_s:.0} ticks/s), 3 instances, shards: 3: state traffic to etcd {:.0} puts/s ({:.2} per tick) in {:.1} transactions/s, {:.0} KiB/s from clients; resident memory per instance {} MiB; tick start after its due time (300 policies): median {} ms, worst {} ms",
        (p1 - p0) / secs,
        (p1 - p0) / secs / ticks_per_s,
        (t1 - t0) / secs,
        (b1 - b0) / secs / 1024.0,
        rss.join(" / "),
        late.get(late.len() / 2).copied().unwrap_or(-1),
        late.last().copied().unwrap_or(-1)
    );
    assert!(!late.is_empty(), "no policy's last tick could be read");
    assert!(p1 > p0, "no state was written to etcd");
}
