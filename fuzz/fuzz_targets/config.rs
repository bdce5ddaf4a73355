//! `cargo fuzz run config`: the RON readers of outside text, the service configuration
//! (with its validation) and `.scaletest.ron`, on arbitrary bytes. A panic, or an input
//! slower than `BUDGET`, is a finding; an error is the expected answer to most inputs.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

const BUDGET: Duration = Duration::from_millis(500);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let started = Instant::now();
    let _ = policyctl::serve::config::parse(text, 0);
    let _ = policyctl::sim::scaletest::parse(text);
    let took = started.elapsed();
    assert!(took < BUDGET, "{} bytes took {took:?} to read", data.len());
});
