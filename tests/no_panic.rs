//! The parser, the checker and the formatter never panic, whatever the input: random
//! text, random token soup, and fixtures mutated at random. Bounded for the normal
//! suite; `fuzz/` runs the same entry point under libFuzzer for longer.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use chrono::{DateTime, Utc};
use policyctl::check::{Options, check_text};
use policyctl::syntax::format::{FormatError, format};
use proptest::prelude::*;

fn options() -> Options {
    Options::at(
        DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
    )
}

/// Everything a user can run on a text: it must return, and `fmt` must never find its
/// own output unstable.
fn exercise(text: &str) -> Result<(), TestCaseError> {
    let checked = check_text(text, &options());
    for d in &checked.diagnostics {
        let span = d.span();
        prop_assert!(
            span.start <= span.end && span.end <= text.len(),
            "span {span:?} outside {} bytes",
            text.len()
        );
    }
    match format(text) {
        Ok(out) => prop_assert_eq!(
            format(&out).ok(),
            Some(out.clone()),
            "fmt is not idempotent"
        ),
        Err(FormatError::Syntax(_)) => {}
        Err(FormatError::Unstable(why)) => {
            prop_assert!(false, "fmt unstable: {why}\n--- input\n{text}")
        }
    }
    Ok(())
}

const TOKENS: &[&str] = &[
    "policy",
    "\"p\"",
    "{",
    "}",
    "target",
    "k8s",
    "\"a/b/c\"",
    "replicas",
    "1",
    "..",
    "10",
    "every",
    "15s",
    "metric",
    "cpu",
    "=",
    "prometheus",
    "r#\"sum(x{a=\\\"b\\\"})\"#",
    "\"up\"",
    "let",
    "x",
    "current",
    "from",
    "timezone",
    "\"Europe/Berlin\"",
    "dry-run",
    "track",
    "at",
    "50%",
    "per",
    "replica",
    "5",
    "desired",
    "when",
    ">",
    "<",
    ">=",
    "and",
    "or",
    "not",
    "(",
    ")",
    "for",
    "5m",
    "scale",
    "up",
    "down",
    "by",
    "to",
    "buffer",
    "30%",
    "tolerance",
    "on",
    "missing",
    "hold",
    "after",
    "3",
    "stabilize",
    "limit",
    "select",
    "min",
    "max",
    "disabled",
    "cooldown",
    "schedule",
    "\"s\"",
    "mon..fri",
    "sat,sun",
    "daily",
    "08:00",
    "18:00",
    "2026-12-01T09:00",
    "in",
    "except",
    "2026-12-25",
    "cron",
    "\"0 2 * * *\"",
    "3h",
    "least",
    "most",
    "exactly",
    "+",
    "-",
    "*",
    "/",
    ",",
    "600MiB",
    "2k",
    "1_000",
    "ceil",
    "clamp",
    "#",
    "\n",
    " ",
    "\"",
    "r#\"",
    "\\",
    "é",
    "💥",
    "\t",
];

fn fixtures() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = Vec::new();
    for dir in ["policies", "tests/check/ok", "tests/check/err", "tests/fmt"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "scale")
                && let Ok(text) = std::fs::read_to_string(entry.path())
            {
                texts.push(text);
            }
        }
    }
    texts.sort();
    texts
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Swap(usize, usize),
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let n = chars.len().max(1);
        match edit {
            Edit::Insert(at, s) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::Delete(at, len) => {
                let at = at % n;
                let end = (at + len % 16).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            Edit::Swap(a, b) => {
                if !chars.is_empty() {
                    let (a, b) = (a % chars.len(), b % chars.len());
                    chars.swap(a, b);
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (
            any::<usize>(),
            prop::sample::select(TOKENS).prop_map(|t| format!(" {t}"))
        )
            .prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), ".{0,3}").prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Edit::Delete(a, l)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in "\\PC{0,300}") {
        exercise(&text)?;
    }

    #[test]
    fn token_soup(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..120)) {
        exercise(&tokens.join(" "))?;
    }

    #[test]
    fn mutated_fixtures(index in any::<usize>(), edits in prop::collection::vec(edit(), 1..8)) {
        let texts = fixtures();
        prop_assume!(!texts.is_empty());
        let text = apply(&texts[index % texts.len()], &edits);
        exercise(&text)?;
    }
}
