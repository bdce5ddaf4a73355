//! `actuate` (drive one actuator by hand) and `plugin inspect`.

use policyctl::input::{caps, read_text};
use std::path::{Path, PathBuf};

use policyctl::actuate::{self, ActuatorsFile, CallLog, Failure, Request, Runtime};

use super::sim::{FOUND_WANTING, Failure as CliFailure, OK, USAGE_OR_IO};

fn runtime_for(
    cache_dir: Option<PathBuf>,
) -> Result<(Runtime, tokio::runtime::Runtime), CliFailure> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliFailure(USAGE_OR_IO, format!("cannot start the async runtime: {e}")))?;
    let runtime = Runtime::new(cache_dir).map_err(|e| CliFailure(USAGE_OR_IO, e.to_string()))?;
    Ok((runtime, tokio))
}

fn print_log(name: &str, log: &CallLog) {
    for line in &log.lines {
        eprintln!("[{name}] {}: {}", line.level, line.message);
    }
    if log.dropped > 0 {
        eprintln!(
            "[{name}] ({} more log lines dropped: the limit is per call)",
            log.dropped
        );
    }
}

pub struct ActuateArgs {
    pub config: PathBuf,
    pub actuator: String,
    pub target: String,
    pub replicas: Option<u32>,
    pub from: Option<u32>,
    pub dry_run: bool,
}

pub fn actuate(args: &ActuateArgs) -> Result<u8, CliFailure> {
    let text = read_text(&args.config, caps::CONFIG).map_err(|e| {
        CliFailure(
            USAGE_OR_IO,
            format!("cannot read `{}`: {e}", args.config.display()),
        )
    })?;
    let file: ActuatorsFile = ron::from_str(&text)
        .map_err(|e| CliFailure(USAGE_OR_IO, format!("{}: {e}", args.config.display())))?;
    let Some(config) = file.actuators.iter().find(|a| a.name == args.actuator) else {
        let names: Vec<&str> = file.actuators.iter().map(|a| a.name.as_str()).collect();
        return Err(CliFailure(
            USAGE_OR_IO,
            format!(
                "no actuator `{}` in `{}` (it has: {})",
                args.actuator,
                args.config.display(),
                names.join(", ")
            ),
        ));
    };
    let base = args
        .config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (runtime, tokio) = runtime_for(file.cache_dir.clone())?;
    let actuator = runtime
        .load(config, base)
        .map_err(|e| CliFailure(USAGE_OR_IO, format!("actuator `{}`: {e}", config.name)))?;
    tokio.block_on(async {
        let (observed, log) = actuator.observe(&args.target).await;
        print_log(&actuator.name, &log);
        match &observed {
            Ok(o) => println!(
                "observed {}: {} replicas{}",
                args.target,
                o.replicas,
                if o.ready { "" } else { " (not ready)" }
            ),
            Err(e) => println!("observe {}: {e}", args.target),
        }
        let Some(to) = args.replicas else {
            return Ok(
                if observed.is_ok() || matches!(observed, Err(Failure::Unsupported(_))) {
                    OK
                } else {
                    FOUND_WANTING
                },
            );
        };
        let from = args
            .from
            .or(observed.as_ref().ok().map(|o| o.replicas))
            .unwrap_or(0);
        let id = format!(
            "manual-{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            std::process::id()
        );
        let request = Request {
            id,
            policy: "manual".into(),
            target: args.target.clone(),
            from,
            to,
            reason: "policyctl actuate".into(),
            dry_run: args.dry_run,
        };
        let (result, log) = actuator.apply(&request).await;
        print_log(&actuator.name, &log);
        match result {
            Ok(outcome) => {
                println!(
                    "applied {} -> {} on {}: {} ({} attempt{})",
                    from,
                    outcome.replicas,
                    args.target,
                    outcome.message,
                    outcome.attempts,
                    if outcome.attempts == 1 { "" } else { "s" }
                );
                Ok(OK)
            }
            Err(e) => {
                println!(
                    "apply failed ({}): {e}",
                    if e.is_transient() {
                        "transient"
                    } else {
                        "permanent"
                    }
                );
                Ok(FOUND_WANTING)
            }
        }
    })
}

pub fn inspect(file: &Path) -> Result<u8, CliFailure> {
    let (runtime, tokio) = runtime_for(None)?;
    match tokio.block_on(actuate::inspect(&runtime, file)) {
        Ok(info) => {
            println!("{}: policyctl:actuator@0.1.0 component", file.display());
            println!("  name:         {}", info.name);
            println!("  version:      {}", info.version);
            println!("  target kinds: {}", info.target_kinds.join(", "));
            Ok(OK)
        }
        Err(e) => {
            println!("{}: does not match the actuator world: {e}", file.display());
            Ok(FOUND_WANTING)
        }
    }
}
