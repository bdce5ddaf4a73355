//! A real etcd cluster for the HA tests and benchmarks: three members of Debian's
//! `etcd-server` on 127.0.0.1 ports (`.ci/run` installs it), each with its data and log
//! under the caller's scratch directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{Serve, free_port, http, wait_until};

pub struct Member {
    name: String,
    pub client: u16,
    peer: u16,
    dir: PathBuf,
    cluster: String,
    child: Option<Child>,
}

impl Member {
    pub fn start(&mut self) {
        let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or_else(|| {
                panic!("etcd is not installed: `.ci/run` installs Debian's `etcd-server`")
            });
        let log = std::fs::File::create(self.dir.with_extension("log"))
            .unwrap_or_else(|e| panic!("etcd's log: {e}"));
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
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
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

pub struct Cluster {
    pub members: Vec<Member>,
}

impl Cluster {
    pub fn start(dir: &Path) -> Cluster {
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

    pub fn healthy(&self) -> bool {
        self.members.iter().any(|m| {
            let (code, body) = http("GET", m.client, "/health", &[], "");
            code == 200 && body.contains("\"true\"")
        })
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("\"http://127.0.0.1:{}\"", m.client))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `serve` instances coordinating on a cluster: the `load` file source, the `record`
/// plugin logging every actuation to the shared `out/d.jsonl`, the policies in
/// `policies/`, the override token `secret`.
pub struct Instances {
    pub ids: Vec<String>,
    pub ports: Vec<u16>,
    pub configs: Vec<PathBuf>,
    /// `None` while an instance is down.
    pub running: Vec<Option<Serve>>,
}

impl Instances {
    /// One instance per id, started in order; `more` adds coordination settings
    /// (`", shards: 3"`).
    pub fn start(dir: &Path, cluster: &Cluster, ids: &[&str], ttl_s: u64, more: &str) -> Instances {
        let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
        let configs: Vec<PathBuf> = ids
            .iter()
            .zip(&ports)
            .map(|(id, port)| instance_config(dir, id, *port, &cluster.endpoints(), ttl_s, more))
            .collect();
        let running = configs
            .iter()
            .zip(&ports)
            .map(|(c, p)| Some(Serve::start(c, *p)))
            .collect();
        Instances {
            ids: ids.iter().map(|i| (*i).to_string()).collect(),
            ports,
            configs,
            running,
        }
    }

    /// Kill (-9) instance `i`.
    pub fn kill(&mut self, i: usize) {
        drop(self.running[i].take());
    }

    /// Start instance `i` again, with its configuration.
    pub fn restart(&mut self, i: usize) {
        self.running[i] = Some(Serve::start(&self.configs[i], self.ports[i]));
    }
}

/// Which running instance says it leads (`/v1/status`).
pub fn leader_of(running: &[Option<Serve>]) -> Option<usize> {
    running
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| status(s)["leader"] == true))
}

/// An instance's `GET /v1/status`.
pub fn status(serve: &Serve) -> serde_json::Value {
    serde_json::from_str(&serve.get("/v1/status").1).unwrap_or(serde_json::Value::Null)
}

/// The shards an instance leads, from its `/v1/status` (none while it is down).
pub fn owned_shards(serve: Option<&Serve>) -> Vec<u64> {
    serve.map_or(Vec::new(), |s| {
        status(s)["shards"]["owned"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default()
    })
}

/// One instance's configuration file, in `dir`.
pub fn instance_config(
    dir: &Path,
    id: &str,
    port: u16,
    endpoints: &str,
    ttl_s: u64,
    more: &str,
) -> PathBuf {
    let (wasm, _) = super::plugins();
    let path = dir.join(format!("serve-{id}.ron"));
    super::write(
        &path,
        &format!(
            r#"(
    sources: [(name: "load", kind: File(path: "load.csv", loop: true))],
    actuators: [(name: "audit", plugin: "{}", settings: {{ "path": "/out/d.jsonl" }}, files: [(host: "out", guest: "/out", write: true)])],
    policies: ["policies"],
    listen: "127.0.0.1:{port}",
    override_token: "secret",
    coordination: Etcd(endpoints: [{endpoints}], prefix: "/policyctl-test/", lease_ttl_s: {ttl_s}, id: Some("{id}"){more}),
)"#,
            wasm.join("policyctl_record.wasm").display()
        ),
    );
    path
}

/// The shard of a policy, as docs/ha.md defines it (written here independently of the
/// service's code): FNV-1a of its name, modulo the shard count.
pub fn shard_of(name: &str, shards: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % shards
}
