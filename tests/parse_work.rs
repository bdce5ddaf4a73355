//! Parsing is linear in its input, whatever the text: recovery never scans the same
//! text twice. Measured in pest's own unit of work (rule calls, counted by its call
//! limit), not in seconds, so the test is exact on any machine: each hostile input gets
//! a budget proportional to its length, and a parse that needs more fails the test.
//! Before recovery was made linear, a run of 30 `{` after a syntax error needed 2^30
//! calls.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroUsize;

use policyctl::diagnostic::Code;
use policyctl::syntax::parse;

/// Rule calls allowed per byte of input (a normal policy file needs about 10).
const CALLS_PER_BYTE: usize = 60;

fn hostile(n: usize) -> Vec<(&'static str, String)> {
    let broken = "policy \"p\" {\n  target k8s \"a/b/c\"\n  this is not a statement ";
    vec![
        (
            "braces after an error",
            format!("{broken}{}", "{".repeat(n)),
        ),
        (
            "braces in a comment after an error",
            format!("{broken}# {}\n", "{".repeat(n)),
        ),
        (
            "braces on many lines",
            format!("{broken}{}", "{ \n".repeat(n)),
        ),
        (
            "unclosed raw strings",
            format!("{broken}{}", "r#\"".repeat(n)),
        ),
        (
            "escaped quotes on one line",
            format!("{broken}{}", "\"\\\"".repeat(n)),
        ),
        (
            "blank lines after an error",
            format!("{broken}{}x", "\n".repeat(n)),
        ),
        (
            "blank lines in a schedule",
            format!(
                "policy \"p\" {{\n schedule \"s\" {{\n oops{}x",
                "\n \t".repeat(n)
            ),
        ),
        ("unclosed policies", "policy \"p\" {\n".repeat(n)),
        ("garbage at the top", format!("{}x", "\n\n}".repeat(n))),
        (
            "open brackets in expressions",
            format!(
                "policy \"p\" {{\n  let x = {}",
                "f(".repeat(n.min(40)).repeat(n / 40 + 1)
            ),
        ),
        (
            "comparison soup",
            format!("policy \"p\" {{\n  when {}", "1 < ".repeat(n)),
        ),
    ]
}

#[test]
fn hostile_inputs_parse_in_linear_work() {
    // The parser sets its own fuse on first use; the budgets below replace it.
    let _ = parse("", 0);
    for n in [2_000, 20_000] {
        for (name, text) in hostile(n) {
            let budget = CALLS_PER_BYTE * text.len() + 10_000;
            pest::set_call_limit(NonZeroUsize::new(budget));
            let (_, diagnostics) = parse(&text, 0);
            let over = diagnostics
                .iter()
                .find(|d| d.code == Code::TooComplex && d.message.contains("work"));
            assert!(
                over.is_none(),
                "{name} ({} bytes) needs more than {budget} rule calls to parse",
                text.len()
            );
        }
    }
    pest::set_call_limit(None);
}

#[test]
fn a_byte_order_mark_is_not_a_syntax_error() {
    let text =
        "\u{feff}policy \"p\" {\n  target k8s \"a/b/c\"\n  replicas 1..2\n  desired = 1\n}\n";
    let (_, diagnostics) = parse(text, 0);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
}
