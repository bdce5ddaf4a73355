//! The `command` actuator: runs a program the operator granted, with the decision in
//! its arguments, and observes through another program that prints a number.
//!
//! Settings (argv as JSON arrays; `{desired}`, `{from}`, `{target}`, `{policy}`,
//! `{id}` and `{dry_run}` are replaced in every argument):
//! - `apply`: e.g. `["/usr/local/bin/workers", "scale", "{target}", "{desired}"]`
//! - `observe` (optional): e.g. `["/usr/local/bin/workers", "count", "{target}"]`
//! - `apply_dry_run` (optional): `true` runs `apply` for dry-run decisions too (with
//!   `{dry_run}` telling the program); by default a dry run runs nothing.
//!
//! Exit status 0 is success; 75 (EX_TEMPFAIL) is a transient failure, retried; any
//! other status is a permanent failure.

wit_bindgen::generate!({ path: "../wit", world: "actuator" });

use policyctl::actuator::command::{CommandError, run};
use policyctl::actuator::config;
use policyctl::actuator::log::{Level, log};

struct Command;

fn argv(setting: &str, fill: &[(&str, String)]) -> Result<Option<Vec<String>>, ActuationError> {
    let Some(text) = config::get(setting) else {
        return Ok(None);
    };
    let parts: Vec<String> = serde_json::from_str(&text).map_err(|e| {
        ActuationError::InvalidConfig(format!(
            "setting `{setting}` must be a JSON array of strings: {e}"
        ))
    })?;
    if parts.is_empty() {
        return Err(ActuationError::InvalidConfig(format!(
            "setting `{setting}` is empty"
        )));
    }
    Ok(Some(
        parts
            .into_iter()
            .map(|mut p| {
                for (key, value) in fill {
                    p = p.replace(&format!("{{{key}}}"), value);
                }
                p
            })
            .collect(),
    ))
}

fn execute(argv: &[String]) -> Result<String, ActuationError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ActuationError::InvalidConfig("no program".into()))?;
    match run(program, args) {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            match out.status {
                0 => Ok(stdout),
                75 => Err(ActuationError::Unavailable(format!(
                    "`{program}` asked to try again (exit 75): {stderr}"
                ))),
                code => Err(ActuationError::InvalidDecision(format!(
                    "`{program}` failed with exit status {code}: {stderr}"
                ))),
            }
        }
        Err(CommandError::Denied(why)) => Err(ActuationError::Forbidden(why)),
        Err(CommandError::Timeout) => Err(ActuationError::Unavailable(format!(
            "`{program}` timed out"
        ))),
        Err(CommandError::Failed(why)) => Err(ActuationError::InvalidConfig(why)),
    }
}

impl Guest for Command {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "command".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            target_kinds: vec!["any".into()],
        }
    }

    fn observe(target: String) -> Result<Observation, ActuationError> {
        let Some(argv) = argv("observe", &[("target", target.clone())])? else {
            return Err(ActuationError::Unsupported(
                "no `observe` command is configured".into(),
            ));
        };
        let out = execute(&argv)?;
        let replicas = out.trim().parse::<u32>().map_err(|_| {
            ActuationError::InvalidConfig(format!(
                "the observe command printed `{}`, not a count",
                out.trim()
            ))
        })?;
        Ok(Observation {
            replicas,
            ready: true,
        })
    }

    fn apply(d: Decision) -> Result<Outcome, ActuationError> {
        if d.dry_run && config::get("apply_dry_run").as_deref() != Some("true") {
            log(
                Level::Info,
                &format!("dry run: would scale {} to {}", d.target, d.to),
            );
            return Ok(Outcome {
                replicas: d.from,
                message: "dry run: nothing ran".into(),
            });
        }
        let fill = [
            ("desired", d.to.to_string()),
            ("from", d.from.to_string()),
            ("target", d.target.clone()),
            ("policy", d.policy.clone()),
            ("id", d.id.clone()),
            ("dry_run", d.dry_run.to_string()),
        ];
        let argv = argv("apply", &fill)?
            .ok_or_else(|| ActuationError::InvalidConfig("setting `apply` is missing".into()))?;
        let out = execute(&argv)?;
        Ok(Outcome {
            replicas: d.to,
            message: out.trim().chars().take(200).collect(),
        })
    }
}

export!(Command);
