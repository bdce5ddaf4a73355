//! `cargo fuzz run check`: parse, check and format arbitrary bytes. Any panic, a
//! formatter whose output does not parse back to the same policy, or an input that
//! takes longer than `BUDGET` to check and format, is a finding.
#![no_main]

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use policyctl::check::{Options, check_text};
use policyctl::syntax::format::{FormatError, format};

/// Fuzz inputs are a few KiB: anything near this is super-linear work (a run of 89
/// bytes once took 50 s). Also run with `-timeout=` so that a hang is reported too.
const BUDGET: Duration = Duration::from_millis(500);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let started = Instant::now();
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).single().unwrap_or_default();
    let _ = check_text(text, &Options::at(now));
    match format(text) {
        Ok(out) => assert_eq!(format(&out).ok().as_deref(), Some(out.as_str()), "fmt is not idempotent"),
        Err(FormatError::Syntax(_)) => {}
        Err(FormatError::Unstable(why)) => panic!("fmt unstable: {why}"),
    }
    let took = started.elapsed();
    assert!(took < BUDGET, "{} bytes took {took:?} to check and format", data.len());
});
