//! `policyctl shadow`: a policy replayed on Prometheus history (as backtests are), beside
//! the count a live autoscaler wanted at each tick; where they differ, and by how much.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use policyctl::serve::sources::{self, Source};
use policyctl::sim::shadow::{self, Pair};
use policyctl::sim::{self, plot};

use super::sim::{Failure, Replay};

pub struct ShadowArgs {
    pub replay: Replay,
    /// PromQL of the other autoscaler's desired count.
    pub against: String,
    pub plot: Option<PathBuf>,
    pub json: bool,
}

pub fn shadow(args: &ShadowArgs) -> Result<u8, Failure> {
    let url = args
        .replay
        .prometheus
        .clone()
        .ok_or_else(|| Failure::io("give --prometheus URL".into()))?;
    let (policy, trace, mut options) = args.replay.prepare(None)?;
    let (Some(first), Some(last)) = (trace.rows.first(), trace.rows.last()) else {
        return Err(Failure::input(format!(
            "{url} has no history of policy `{}`'s metrics in that span",
            policy.name
        )));
    };
    let source =
        Source::prometheus(&url, std::time::Duration::from_secs(60)).map_err(Failure::io)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::io(format!("cannot start the async runtime: {e}")))?;
    let theirs = runtime
        .block_on(sources::series(
            &source,
            &args.against,
            first.at,
            last.at,
            policy.every,
        ))
        .map_err(|e| Failure::io(format!("--against: {e}")))?;
    let stale = sim::STALE_AFTER;
    if options.initial.is_none() {
        // Start where the live autoscaler was.
        options.initial = shadow::value_at(&theirs, first.at, stale).map(|v| {
            v.round()
                .clamp(f64::from(policy.min), f64::from(policy.max)) as u32
        });
    }
    let mut pairs = Vec::new();
    let mut points = Vec::new();
    sim::run(&policy, &trace, &options, |view| {
        let e = &view.tick.explanation;
        let other = shadow::value_at(&theirs, view.at, stale);
        pairs.push(Pair {
            at: view.at,
            ours: e.result,
            theirs: other,
        });
        if args.plot.is_some() {
            points.push(plot::Point {
                at: view.at,
                samples: view.samples.to_vec(),
                recommendation: e.recommendation(),
                replicas: e.result,
                schedules: e.schedules.clone(),
                other,
            });
        }
    })
    .map_err(|e| Failure::input(format!("{url}: {e}")))?;
    let d = shadow::divergence(&pairs, policy.every.as_secs_f64());
    if let Some(path) = &args.plot {
        let svg = plot::svg_beside(
            &format!("policy {} beside the live autoscaler", policy.name),
            &policy,
            &points,
            Some("live autoscaler (--against)"),
        )
        .map_err(|e| Failure::io(format!("cannot draw the plot: {e}")))?;
        std::fs::write(path, svg)
            .map_err(|e| Failure::io(format!("cannot write `{}`: {e}", path.display())))?;
    }
    if args.json {
        let out = serde_json::json!({
            "policy": policy.name,
            "against": args.against,
            "start": time(first.at),
            "end": time(last.at),
            "every_s": policy.every.as_secs_f64(),
            "divergence": d,
            "ticks": pairs,
        });
        println!("{out}");
        return Ok(0);
    }
    print!(
        "{}",
        table(&policy.name, &args.against, first.at, last.at, &d)
    );
    Ok(0)
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn table(
    name: &str,
    against: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    d: &shadow::Divergence,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy `{name}` beside `{against}`");
    let _ = writeln!(
        out,
        "from {} to {}: {} ticks, {} with the other's count",
        time(start),
        time(end),
        d.ticks,
        d.compared
    );
    let _ = writeln!(out, "{:<30} {:>14} {:>14}", "", "policyctl", "live");
    let _ = writeln!(
        out,
        "{:<30} {:>14.1} {:>14.1}",
        "replica-hours", d.replica_hours_ours, d.replica_hours_theirs
    );
    let _ = writeln!(
        out,
        "{:<30} {:>14} {:>14}",
        "scale events", d.events_ours, d.events_theirs
    );
    let _ = writeln!(
        out,
        "{:<30} {:>14}",
        "hours above the live count",
        format!("{:.2} h", d.hours_above)
    );
    let _ = writeln!(
        out,
        "{:<30} {:>14}",
        "hours below the live count",
        format!("{:.2} h", d.hours_below)
    );
    let _ = writeln!(
        out,
        "{:<30} {:>14}",
        "hours equal",
        format!("{:.2} h", d.hours_equal)
    );
    match &d.largest_gap {
        Some(g) => {
            let _ = writeln!(
                out,
                "largest gap: {:+} replicas at {} (policyctl {}, live {})",
                g.difference,
                time(g.at),
                g.ours,
                g.theirs
            );
        }
        None => {
            let _ = writeln!(out, "largest gap: none (the other's count was never known)");
        }
    }
    out
}
