//! The `record` actuator: appends each decision as one JSON line to a file the operator
//! granted, and observes the last count it recorded for a target. For audits, dry runs
//! and tests.
//!
//! Settings: `path`, the file's path as the plugin sees it (under a granted `files`
//! entry, e.g. `/out/decisions.jsonl`).

use std::io::Write;

wit_bindgen::generate!({ path: "../wit", world: "actuator" });

use policyctl::actuator::config;
use policyctl::actuator::log::{Level, log};

struct Record;

fn path() -> Result<String, ActuationError> {
    config::get("path").ok_or_else(|| {
        ActuationError::InvalidConfig(
            "setting `path` is missing: where to append, e.g. /out/decisions.jsonl".into(),
        )
    })
}

fn lines(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Guest for Record {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "record".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            target_kinds: vec!["any".into()],
        }
    }

    fn observe(target: String) -> Result<Observation, ActuationError> {
        let path = path()?;
        let last = lines(&path)
            .into_iter()
            .rev()
            .find(|l| l["target"] == target.as_str() && l["dry_run"] == false);
        match last.and_then(|l| l["to"].as_u64()) {
            Some(n) => Ok(Observation {
                replicas: u32::try_from(n).unwrap_or(u32::MAX),
                ready: true,
            }),
            None => Err(ActuationError::Unsupported(format!(
                "nothing recorded yet for `{target}`"
            ))),
        }
    }

    fn apply(d: Decision) -> Result<Outcome, ActuationError> {
        let path = path()?;
        // A retry carries the same id: record each decision once.
        if lines(&path).iter().any(|l| l["id"] == d.id.as_str()) {
            log(
                Level::Info,
                &format!("decision {} is already recorded", d.id),
            );
            return Ok(Outcome {
                replicas: d.to,
                message: format!("already recorded in {path}"),
            });
        }
        let line = serde_json::json!({
            "id": d.id, "policy": d.policy, "target": d.target, "from": d.from,
            "to": d.to, "reason": d.reason, "dry_run": d.dry_run,
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                ActuationError::InvalidConfig(format!(
                    "cannot open `{path}`: {e} (is its directory granted with write?)"
                ))
            })?;
        // One write call per line, in append mode: instances that share the file (HA
        // tests) never interleave their lines.
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| ActuationError::Unavailable(format!("cannot write `{path}`: {e}")))?;
        Ok(Outcome {
            replicas: d.to,
            message: format!("recorded in {path}"),
        })
    }
}

export!(Record);
