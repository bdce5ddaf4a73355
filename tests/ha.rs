//! Highly available `serve` on a real etcd cluster (Debian's `etcd-server`, three members
//! on 127.0.0.1; `.ci/run` installs it): three instances with the `record` plugin, whose
//! shared log is the witness of every actuation. The leader is killed (-9) right after it
//! acts, `POLICYCTL_HA_KILLS` times (20 by default); quorum is lost and regained; a
//! leader is paused past its lease.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::{Serve, free_port, http, wait_until};

/// The leader's lease, and the policy's `every`: a follower takes over within
/// TTL + every (+ the campaign's pause of TTL/3).
const TTL: u64 = 2;
const COOLDOWN_MS: i64 = 3000;

struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    cluster: String,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self) {
        let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("etcd is not installed: `.ci/run` installs Debian's `etcd-server`");
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new(etcd)
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", self.client),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", self.client),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer),
            ])
            .args([
                "--initial-cluster",
                &self.cluster,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--initial-cluster-token", "policyctl-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Cluster {
    members: Vec<Member>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| Member {
                name: format!("m{i}"),
                client: *client,
                peer: *peer,
                dir: dir.join(format!("etcd-m{i}")),
                cluster: cluster.clone(),
                child: None,
            })
            .collect();
        for m in &mut members {
            m.start();
        }
        let c = Cluster { members };
        assert!(
            wait_until(30, || c.healthy()),
            "etcd did not become healthy"
        );
        c
    }

    fn healthy(&self) -> bool {
        self.members.iter().any(|m| {
            let (code, body) = http("GET", m.client, "/health", &[], "");
            code == 200 && body.contains("\"true\"")
        })
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("\"http://127.0.0.1:{}\"", m.client))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One `serve` instance's configuration: the shared policies and record log.
fn config(dir: &Path, id: &str, port: u16, endpoints: &str) -> PathBuf {
    let (wasm, _) = support::plugins();
    let path = dir.join(format!("serve-{id}.ron"));
    support::write(
        &path,
        &format!(
            r#"(
    sources: [(name: "load", kind: File(path: "load.csv", loop: true))],
    actuators: [(name: "audit", plugin: "{}", settings: {{ "path": "/out/d.jsonl" }}, files: [(host: "out", guest: "/out", write: true)])],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
    override_token: "secret",
    coordination: Etcd(endpoints: [{endpoints}], prefix: "/policyctl-test/", lease_ttl_s: {TTL}, id: Some("{id}")),
)"#,
            wasm.join("policyctl_record.wasm").display()
        ),
    );
    path
}

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

fn status(serve: &Serve) -> Value {
    serde_json::from_str(&serve.get("/v1/status").1).unwrap_or(Value::Null)
}

fn leader_of(instances: &[Option<Serve>]) -> Option<usize> {
    instances
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| status(s)["leader"] == true))
}

#[test]
fn a_killed_leader_is_replaced_within_its_lease_and_nothing_is_applied_twice() {
    let dir = support::scratch("ha-kill");
    setup(&dir);
    let cluster = Cluster::start(&dir);
    let ids = ["a", "b", "c"];
    let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let configs: Vec<PathBuf> = ids
        .iter()
        .zip(&ports)
        .map(|(id, port)| config(&dir, id, *port, &cluster.endpoints()))
        .collect();
    let mut instances: Vec<Option<Serve>> = configs
        .iter()
        .zip(&ports)
        .map(|(c, p)| Some(Serve::start(c, *p)))
        .collect();
    assert!(
        wait_until(20, || leader_of(&instances).is_some()),
        "no leader was elected"
    );
    // Exactly one leads, and every instance knows which.
    let leader = leader_of(&instances).unwrap();
    for s in instances.iter().flatten() {
        let st = status(s);
        assert_eq!(st["coordination"], "etcd");
        assert_eq!(st["leader_id"], ids[leader], "{st}");
    }
    assert_eq!(
        instances
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
        let Some(leader) = leader_of(&instances) else {
            continue;
        };
        let killed = Instant::now();
        drop(instances[leader].take()); // SIGKILL
        let took_over = wait_until(TTL * 3 + 5, || leader_of(&instances).is_some());
        assert!(took_over, "round {round}: no instance took over");
        failovers.push(killed.elapsed());
        // The killed one comes back as a follower.
        instances[leader] = Some(Serve::start(&configs[leader], ports[leader]));
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
    let ids = ["a", "b"];
    let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let instances: Vec<Option<Serve>> = ids
        .iter()
        .zip(&ports)
        .map(|(id, p)| {
            Some(Serve::start(
                &config(&dir, id, *p, &cluster.endpoints()),
                *p,
            ))
        })
        .collect();
    assert!(wait_until(20, || leader_of(&instances).is_some()));
    assert!(wait_until(20, || decisions(&dir).len() >= 2));
    // A follower refuses an override (it would never reach the state), naming the leader.
    let leader = leader_of(&instances).unwrap();
    let follower = instances[1 - leader].as_ref().unwrap();
    let (code, body) = http(
        "POST",
        follower.port,
        "/v1/policies/ramp/override",
        &[
            ("Authorization", "Bearer secret"),
            ("Content-Type", "application/json"),
        ],
        r#"{"replicas": 3}"#,
    );
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&format!("to the leader ({},", ids[leader])),
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
        leader_of(&instances).is_none(),
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
        wait_until(30, || leader_of(&instances).is_some()),
        "no leader after quorum came back"
    );
    assert!(
        wait_until(30, || decisions(&dir).len() > frozen),
        "no decision after quorum came back"
    );

    // The leader, paused past its lease: the other takes over; resumed, it must not act.
    let leader = leader_of(&instances).unwrap();
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
        let path = config(&dir, id, port, &endpoints);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            &format!("id: Some(\"{id}\"))"),
            &format!("id: Some(\"{id}\"), tls: Some({tls}))"),
        );
        std::fs::write(&path, text).unwrap();
        path
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
