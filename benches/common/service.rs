//! A service with a generated fleet, for the service benchmarks: one-metric policies of
//! three shapes (as real fleets mix them) on the `file` source, and the `record` plugin
//! in dry-run.

use std::path::Path;
use std::sync::Arc;

use policyctl::serve::Service;

/// Policies per generated file.
pub const PER_FILE: usize = 100;

/// Policy `p{i}`, ticking at `every` (`"10s"`).
pub fn policy(i: usize, every: &str) -> String {
    let rules = match i % 3 {
        0 => "  track q per replica 5\n".to_string(),
        1 => "  when q > 100 for 2m scale up by 1\n  when q < 10 for 5m scale down by 1\n".to_string(),
        _ => "  let each = q / max(current, 1)\n  desired = ceil(each / 4) + 2\n  limit up 50% per 1m\n".to_string(),
    };
    format!(
        "policy \"p{i}\" {{\n  target audit \"t{i}\"\n  replicas 2..40\n  every {every}\n  metric q = load \"q\"\n{rules}}}\n"
    )
}

/// A service over `count` policies written under `dir` (not loaded yet: call
/// `policies::reload`): `support::in_process_service`.
pub fn service(dir: &Path, count: usize, every: &str, record_wasm: &Path) -> Arc<Service> {
    let mut trace = String::from("time,q\n");
    for i in 0..3600 {
        trace.push_str(&format!(
            "2026-01-01T{:02}:{:02}:{:02}Z,{}\n",
            i / 3600,
            (i / 60) % 60,
            i % 60,
            20 + (i % 7) * 3
        ));
    }
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    write(&dir.join("load.csv"), &trace);
    std::fs::create_dir_all(dir.join("policies")).unwrap_or_else(|e| panic!("policies: {e}"));
    for f in 0..count.div_ceil(PER_FILE) {
        let text: String = (f * PER_FILE..((f + 1) * PER_FILE).min(count))
            .map(|i| policy(i, every))
            .collect();
        write(&dir.join(format!("policies/f{f:04}.scale")), &text);
    }
    crate::support::in_process_service(dir, record_wasm)
}

/// A field of /proc/self/status in MiB (`"VmRSS:"`, `"VmHWM:"`).
pub fn resident_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
