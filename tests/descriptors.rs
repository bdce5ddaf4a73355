//! Plugins cannot take the process's descriptors: with a low `nofile` limit, actuators
//! that open files and hold them get a bounded share, and the host itself (state
//! writes, other actuators) always finds descriptors free. Its own test binary: it
//! lowers the limit of the whole process.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use policyctl::actuate::config::FileGrant;
use policyctl::actuate::{ActuatorConfig, Limits, Request, Runtime};
use support::{plugins, scratch};

fn request(id: &str, target: &str) -> Request {
    Request {
        id: id.into(),
        policy: "p".into(),
        target: target.into(),
        from: 1,
        to: 2,
        reason: "test".into(),
        dry_run: false,
    }
}

#[test]
fn descriptor_floods_leave_the_host_and_other_actuators_working() {
    let (shipped, test_plugins) = plugins();
    let dir = scratch("descriptors");
    std::fs::write(dir.join("f"), "x").unwrap_or_else(|e| panic!("{e}"));
    let limit = libc::rlimit {
        rlim_cur: 512,
        rlim_max: 512.max(policyctl::actuate::descriptor_limit()),
    };
    // SAFETY: setrlimit reads one struct of ours.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);

    let rt = Runtime::new(Some(dir.join("cache"))).unwrap_or_else(|e| panic!("{e}"));
    let mut flood = ActuatorConfig::new("flood", test_plugins.join("policyctl_hostile.wasm"));
    flood.settings = [("attack", "fd-flood"), ("file", "/data/f")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    flood.files = vec![FileGrant {
        host: dir.to_path_buf(),
        guest: "/data".into(),
        write: false,
    }];
    flood.limits = Limits {
        timeout_ms: 3000,
        attempts: 1,
        ..Limits::default()
    };
    let flood = rt
        .load(&flood, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut record = ActuatorConfig::new("record", shipped.join("policyctl_record.wasm"));
    record.settings = [("path".to_string(), "/out/d.jsonl".to_string())].into();
    record.files = vec![FileGrant {
        host: dir.to_path_buf(),
        guest: "/out".into(),
        write: true,
    }];
    let record = rt
        .load(&record, Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    tokio.block_on(async {
        let floods: Vec<_> = (0..8)
            .map(|i| {
                let f = flood.clone();
                tokio::spawn(async move {
                    f.apply(&request(&format!("f{i}"), &format!("f{i}")))
                        .await
                        .0
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The host opens files while the floods hold theirs (a state write needs two).
        let held: Vec<std::fs::File> = (0..100)
            .map(|i| {
                std::fs::File::create(dir.join(format!("host-{i}")))
                    .unwrap_or_else(|e| panic!("the host could not open a file: {e}"))
            })
            .collect();
        drop(held);
        let result = record.apply(&request("r", "r")).await.0;
        assert!(result.is_ok(), "another actuator failed: {result:?}");
        for f in floods {
            let _ = f.await;
        }
    });
}
