//! Highly available `serve` on a real etcd cluster (Debian's `etcd-server`, three members
//! on 127.0.0.1; `.ci/run` installs it): three instances with the `record` plugin, whose
//! shared log is the witness of every actuation. The leader is killed (-9) right after it
//! acts, `POLICYCTL_HA_KILLS` times (20 by default); quorum is lost and regained; a
//! leader is paused past its lease.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::etcd::{
    Cluster, Instances, instance_config, leader_of, owned_shards, shard_of, status,
};
use support::{Serve, free_port, http, wait_until};

/// The leader's lease, and the policy's `every`: a follower takes over within
/// TTL + every (+ the campaign's pause of TTL/3).
const TTL: u64 = 2;
const COOLDOWN_MS: i64 = 3000;

/// The policy: from 1 up to 24, one step per decision, one decision per 3 s at most.
fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("out")).unwrap();
    support::write(
        &dir.join("load.csv"),
        &support::per_second_trace("load", 60, |_| "24".into()),
    );
    support::write(
        &dir.join("policies/ramp.scale"),
        r#"policy "ramp" {
  target audit "ramp"
  replicas 1..24
  every 1s
  metric load = load "load"
  desired = load
  limit up 1 per 3s
  cooldown up 3s
  stabilize down 0s
}
"#,
    );
}

/// A policy that ramps from 1 to `top`, one step per decision, one decision per 3 s.
fn ramp(name: &str, top: u32) -> String {
    format!(
        "policy \"{name}\" {{\n  target audit \"{name}\"\n  replicas 1..{top}\n  every 1s\n  metric load = load \"load\"\n  desired = load\n  limit up 1 per 3s\n  cooldown up 3s\n  stabilize down 0s\n}}\n"
    )
}

/// Every line of the record log.
fn decisions(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("out/d.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The witness: every decision once, each step from the count before it, and no two
/// closer than the cooldown (by their tick times, from the request ids).
fn check_witness(log: &[Value]) {
    let mut ids = std::collections::BTreeSet::new();
    let mut last: Option<(i64, u64)> = None;
    for line in log {
        let id = line["id"].as_str().unwrap();
        assert!(
            ids.insert(id.to_string()),
            "decision {id} was applied twice:\n{log:#?}"
        );
        let at: i64 = id.rsplit('@').next().unwrap().parse().unwrap();
        let (from, to) = (line["from"].as_u64().unwrap(), line["to"].as_u64().unwrap());
        if let Some((before_at, before_to)) = last {
            assert_eq!(
                from, before_to,
                "decision {id} starts from {from}, but the count was {before_to}:\n{log:#?}"
            );
            assert!(
                at - before_at >= COOLDOWN_MS,
                "decision {id} came {} ms after the one before (cooldown {COOLDOWN_MS} ms):\n{log:#?}",
                at - before_at
            );
        }
        last = Some((at, to));
    }
}

/// The record log of one policy.
fn decisions_of(log: &[Value], policy: &str) -> Vec<Value> {
    log.iter()
        .filter(|l| l["policy"] == policy)
        .cloned()
        .collect()
}

#[test]
fn a_killed_leader_is_replaced_within_its_lease_and_nothing_is_applied_twice() {
    let dir = support::scratch("ha-kill");
    setup(&dir);
    let cluster = Cluster::start(&dir);
    let mut fleet = Instances::start(&dir, &cluster, &["a", "b", "c"], TTL, "");
    let ids = fleet.ids.clone();
    assert!(
        wait_until(20, || leader_of(&fleet.running).is_some()),
        "no leader was elected"
    );
    // Exactly one leads, and every instance learns which (a follower that started last
    // may not have read the leader's key yet when the first one wins).
    let leader = leader_of(&fleet.running).unwrap();
    assert!(
        wait_until(20, || fleet
            .running
            .iter()
            .flatten()
            .all(|s| status(s)["leader_id"] == ids[leader])),
        "not every instance learned the leader: {:?}",
        fleet
            .running
            .iter()
            .flatten()
            .map(status)
            .collect::<Vec<_>>()
    );
    for s in fleet.running.iter().flatten() {
        assert_eq!(status(s)["coordination"], "etcd");
    }
    assert_eq!(
        fleet
            .running
            .iter()
            .flatten()
            .filter(|s| status(s)["leader"] == true)
            .count(),
        1
    );

    let kills: usize = std::env::var("POLICYCTL_HA_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let mut failovers = Vec::new();
    for round in 0..kills {
        // Wait for the leader to act, then kill it at once: the moment a lost state
        // would show, as a decision inside the cooldown.
        let before = decisions(&dir).len();
        if !wait_until(30, || decisions(&dir).len() > before) {
            break; // the ramp is done
        }
        let Some(leader) = leader_of(&fleet.running) else {
            continue;
        };
        let killed = Instant::now();
        fleet.kill(leader);
        let took_over = wait_until(TTL * 3 + 5, || leader_of(&fleet.running).is_some());
        assert!(took_over, "round {round}: no instance took over");
        failovers.push(killed.elapsed());
        // The killed one comes back as a follower.
        fleet.restart(leader);
    }
    assert!(
        failovers.len() >= kills.min(15),
        "only {} failovers before the ramp ended",
        failovers.len()
    );
    failovers.sort();
    let worst = *failovers.last().unwrap();
    let median = failovers[failovers.len() / 2];
    eprintln!(
        "failover (kill → new leader): median {median:?}, worst {worst:?} over {}",
        failovers.len()
    );
    // TTL + `every` + the campaign's pause (TTL / 3) + polling slack.
    assert!(
        worst <= Duration::from_millis(TTL * 1000 + 1000 + 700 + 1000),
        "a failover took {worst:?}"
    );

    // The count converges to what one uninterrupted instance reaches.
    assert!(
        wait_until(120, || decisions(&dir)
            .last()
            .is_some_and(|d| d["to"] == 24)),
        "the ramp did not reach 24: {:#?}",
        decisions(&dir)
    );
    let log = decisions(&dir);
    check_witness(&log);
    assert_eq!(log.first().unwrap()["from"], 1);
    assert_eq!(log.len(), 23, "{log:#?}");
}

#[test]
fn without_quorum_the_leader_stops_acting_and_a_paused_leader_never_acts_again() {
    let dir = support::scratch("ha-quorum");
    setup(&dir);
    let mut cluster = Cluster::start(&dir);
    let fleet = Instances::start(&dir, &cluster, &["a", "b"], TTL, "");
    let (ids, instances) = (&fleet.ids, &fleet.running);
    assert!(wait_until(20, || leader_of(instances).is_some()));
    assert!(wait_until(20, || decisions(&dir).len() >= 2));
    // A follower forwards overrides to the leader (tests below); one that was already
    // forwarded it refuses (no second hop), naming the leader.
    let leader = leader_of(instances).unwrap();
    let follower = instances[1 - leader].as_ref().unwrap();
    let (code, body) = http(
        "POST",
        follower.port,
        "/v1/policies/ramp/override",
        &[
            ("Authorization", "Bearer secret"),
            ("Content-Type", "application/json"),
            ("x-policyctl-forwarded-by", "elsewhere"),
        ],
        r#"{"replicas": 3}"#,
    );
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&format!("to its leader ({},", ids[leader])),
        "{body}"
    );

    // Two of three members stop: no quorum. Within one TTL, no more actuation.
    cluster.members[1].stop();
    cluster.members[2].stop();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(TTL) + Duration::from_millis(1500));
    let frozen = decisions(&dir).len();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        decisions(&dir).len(),
        frozen,
        "a decision was applied without quorum"
    );
    assert!(
        leader_of(instances).is_none(),
        "an instance still claims to lead {:?} after quorum was lost",
        stopped.elapsed()
    );
    // Reads go on.
    for s in instances.iter().flatten() {
        assert_eq!(s.get("/v1/policies/ramp").0, 200);
    }
    // Quorum back: work resumes.
    cluster.members[1].start();
    cluster.members[2].start();
    assert!(
        wait_until(30, || leader_of(instances).is_some()),
        "no leader after quorum came back"
    );
    assert!(
        wait_until(30, || decisions(&dir).len() > frozen),
        "no decision after quorum came back"
    );

    // The leader, paused past its lease: the other takes over; resumed, it must not act.
    let leader = leader_of(instances).unwrap();
    let pid = instances[leader].as_ref().unwrap().child.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(
        wait_until(TTL * 3 + 5, || instances.iter().enumerate().any(
            |(i, s)| i != leader && s.as_ref().is_some_and(|s| status(s)["leader"] == true)
        )),
        "no takeover from a paused leader"
    );
    let before = decisions(&dir).len();
    assert!(
        wait_until(20, || decisions(&dir).len() > before),
        "the new leader does not act"
    );
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let resumed = status(instances[leader].as_ref().unwrap());
    assert_eq!(resumed["leader"], false, "{resumed}");
    check_witness(&decisions(&dir));
}

/// TLS to etcd: a member that serves `https://` and asks for client certificates
/// (`--client-cert-auth`), all from a private CA made here. With the CA and a client
/// certificate, an instance leads; without its client certificate, another never can.
#[test]
fn tls_to_an_etcd_that_asks_for_client_certificates() {
    use rcgen::{CertificateParams, DnType, KeyPair};

    let dir = support::scratch("ha-tls");
    setup(&dir);
    let (ca_cert, issuer) = support::private_ca("policyctl etcd test CA");
    let issue = |name: &str, sans: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    };
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    issue("server", vec!["127.0.0.1".into(), "localhost".into()]);
    issue("client", vec!["policyctl".into()]);

    let (client, peer) = (free_port(), free_port());
    let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("etcd is not installed: `.ci/run` installs Debian's `etcd-server`");
    let mut member = Command::new(etcd)
        .args(["--name", "m0", "--data-dir"])
        .arg(dir.join("etcd-tls"))
        .args([
            "--listen-client-urls",
            &format!("https://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("https://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args(["--initial-cluster", &format!("m0=http://127.0.0.1:{peer}")])
        .arg("--cert-file")
        .arg(dir.join("server.pem"))
        .arg("--key-file")
        .arg(dir.join("server-key.pem"))
        .arg("--trusted-ca-file")
        .arg(dir.join("ca.pem"))
        .arg("--client-cert-auth")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("etcd-tls.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let endpoints = format!("\"https://127.0.0.1:{client}\"");
    let with_tls = |id: &str, port: u16, tls: &str| {
        instance_config(
            &dir,
            id,
            port,
            &endpoints,
            TTL,
            &format!(", tls: Some({tls})"),
        )
    };
    let (pa, pb) = (free_port(), free_port());
    let a = Serve::start(
        &with_tls(
            "a",
            pa,
            r#"(ca_file: "ca.pem", cert_file: Some("client.pem"), key_file: Some("client-key.pem"))"#,
        ),
        pa,
    );
    let b = Serve::start(&with_tls("b", pb, r#"(ca_file: "ca.pem")"#), pb);
    let leads = wait_until(30, || status(&a)["leader"] == true);
    let _ = member.kill();
    let _ = member.wait();
    assert!(
        leads,
        "the instance with a client certificate did not lead: {}\n{}",
        status(&a),
        a.logs()
    );
    let st = status(&b);
    assert_eq!(st["leader"], false, "{st}");
    assert_ne!(
        st["leader_id"], "a",
        "b reached etcd without a client certificate: {st}"
    );
}

/// Sharding: 3 instances share 3 shards of 6 policies, one shard each. One is killed:
/// its shard goes to another within TTL + `every`, its policies go on from the state it
/// left, and nothing is applied twice. It comes back: a shard is handed back to it
/// (state written first), and still nothing is applied twice.
#[test]
fn with_shards_each_instance_leads_its_part_and_a_dead_ones_part_moves() {
    const SHARDS: u64 = 3;
    let dir = support::scratch("ha-shards");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    support::write(
        &dir.join("load.csv"),
        &support::per_second_trace("load", 60, |_| "14".into()),
    );
    let names: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    for name in &names {
        support::write(&dir.join(format!("policies/{name}.scale")), &ramp(name, 14));
    }
    // Every shard has a policy, so every shard's move shows in the log.
    for shard in 0..SHARDS {
        assert!(
            names.iter().any(|n| shard_of(n, SHARDS) == shard),
            "no policy in shard {shard}"
        );
    }
    let cluster = Cluster::start(&dir);
    let mut fleet = Instances::start(&dir, &cluster, &["a", "b", "c"], TTL, ", shards: 3");
    let ids = fleet.ids.clone();
    let owned = |instances: &[Option<Serve>]| -> Vec<Vec<u64>> {
        instances.iter().map(|s| owned_shards(s.as_ref())).collect()
    };
    let one_each = |instances: &[Option<Serve>]| {
        let o = owned(instances);
        let mut all: Vec<u64> = o.concat();
        all.sort();
        o.iter().all(|s| s.len() == 1) && all == vec![0, 1, 2]
    };
    assert!(
        wait_until(30, || one_each(&fleet.running)),
        "the shards were not spread one per instance: {:?}",
        owned(&fleet.running)
    );
    let st = status(fleet.running[0].as_ref().unwrap());
    assert_eq!(st["shards"]["count"], 3, "{st}");
    assert_eq!(st["members"], serde_json::json!(["a", "b", "c"]), "{st}");
    assert_eq!(st["leader"], true, "{st}");
    // Every policy decides, each on the instance that leads its shard.
    assert!(
        wait_until(30, || names.iter().all(|n| !decisions_of(
            &decisions(&dir),
            n
        )
        .is_empty())),
        "not every policy decided: {:#?}",
        decisions(&dir)
    );
    // Each policy ticks on the instance that leads its shard, and only there.
    let owners = owned(&fleet.running);
    let last_ticks = |instances: &[Option<Serve>]| -> Vec<Vec<Value>> {
        instances
            .iter()
            .map(|s| {
                names
                    .iter()
                    .map(|n| {
                        get_json(s.as_ref().unwrap(), &format!("/v1/policies/{n}"))["last"]["at"]
                            .clone()
                    })
                    .collect()
            })
            .collect()
    };
    let before = last_ticks(&fleet.running);
    std::thread::sleep(Duration::from_millis(2500));
    let after = last_ticks(&fleet.running);
    for (i, id) in ids.iter().enumerate() {
        for (p, name) in names.iter().enumerate() {
            let ticked = before[i][p] != after[i][p];
            let shard = shard_of(name, SHARDS);
            assert_eq!(
                ticked,
                owners[i].contains(&shard),
                "{id} and {name} (shard {shard}): owners {owners:?}, last ticks {before:?} then {after:?}"
            );
        }
    }

    // Kill one: its shard moves to another instance within TTL + every (+ a pause).
    let victim = 1;
    let lost = owners[victim][0];
    let moved: Vec<&String> = names
        .iter()
        .filter(|n| shard_of(n, SHARDS) == lost)
        .collect();
    let killed = Instant::now();
    fleet.kill(victim);
    assert!(
        wait_until(TTL * 3 + 5, || owned(&fleet.running)
            .concat()
            .contains(&lost)),
        "shard {lost} was not taken over: {:?}",
        owned(&fleet.running)
    );
    let took = killed.elapsed();
    eprintln!("shard {lost} moved {took:?} after its instance was killed");
    assert!(
        took <= Duration::from_millis(TTL * 1000 + 1000 + 700 + 1000),
        "shard {lost} took {took:?} to move"
    );
    let at_kill: Vec<usize> = moved
        .iter()
        .map(|n| decisions_of(&decisions(&dir), n).len())
        .collect();
    assert!(
        wait_until(20, || moved
            .iter()
            .zip(&at_kill)
            .all(|(n, k)| decisions_of(&decisions(&dir), n).len() > *k)),
        "the moved policies {moved:?} did not decide again"
    );

    // It comes back: one shard each again, handed over with its state.
    fleet.restart(victim);
    assert!(
        wait_until(30, || one_each(&fleet.running)),
        "no shard was handed back: {:?}",
        owned(&fleet.running)
    );

    // Every policy reaches the top, each decision once, none inside the cooldown.
    assert!(
        wait_until(90, || names.iter().all(|n| decisions_of(
            &decisions(&dir),
            n
        )
        .last()
        .is_some_and(|d| d["to"] == 14))),
        "not every policy reached 14: {:#?}",
        decisions(&dir)
    );
    let log = decisions(&dir);
    for name in &names {
        let mine = decisions_of(&log, name);
        check_witness(&mine);
        assert_eq!(mine.len(), 13, "{name}: {mine:#?}");
    }

    // An override sent to an instance that does not lead the policy is forwarded to the
    // one that does, and so is its removal (at the count it has: nothing is applied).
    let owners = owned(&fleet.running);
    let name = &names[0];
    let owner = owners
        .iter()
        .position(|o| o.contains(&shard_of(name, SHARDS)))
        .unwrap();
    let other = fleet.running[(owner + 1) % 3].as_ref().unwrap();
    let auth = [
        ("Authorization", "Bearer secret"),
        ("Content-Type", "application/json"),
    ];
    let path = format!("/v1/policies/{name}/override");
    let (code, body) = http(
        "POST",
        other.port,
        &path,
        &auth,
        r#"{"replicas": 14, "reason": "hold"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let there = get_json(
        fleet.running[owner].as_ref().unwrap(),
        &format!("/v1/policies/{name}"),
    );
    assert_eq!(there["override"]["replicas"], 14, "{there}");
    assert_eq!(there["override"]["reason"], "hold", "{there}");
    let (code, body) = http("DELETE", other.port, &path, &auth, "");
    assert_eq!(code, 200, "{body}");
    let there = get_json(
        fleet.running[owner].as_ref().unwrap(),
        &format!("/v1/policies/{name}"),
    );
    assert!(there["override"].is_null(), "{there}");
}

fn get_json(serve: &Serve, path: &str) -> Value {
    serde_json::from_str(&serve.get(path).1).unwrap_or(Value::Null)
}
