//! `cargo fuzz run check`: parse, check and format arbitrary bytes. Any panic, or a
//! formatter whose output does not parse back to the same policy, is a finding.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use policyctl::check::{Options, check_text};
use policyctl::syntax::format::{FormatError, format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).single().unwrap_or_default();
    let _ = check_text(text, &Options::at(now));
    match format(text) {
        Ok(out) => assert_eq!(format(&out).ok().as_deref(), Some(out.as_str()), "fmt is not idempotent"),
        Err(FormatError::Syntax(_)) => {}
        Err(FormatError::Unstable(why)) => panic!("fmt unstable: {why}"),
    }
});
