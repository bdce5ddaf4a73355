//! `fmt` keeps meaning and is idempotent, on every fixture and shipped policy; its
//! layout is pinned by the snapshots of `tests/fmt/*.scale`.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use policyctl::check::{Options, check_text};
use policyctl::syntax::format::{FormatError, format};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn scale_files(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "scale"))
        .collect();
    out.sort();
    out
}

#[test]
fn formatting_keeps_meaning_and_is_idempotent() {
    let options = Options::at(now());
    let mut formatted_files = 0;
    for dir in [
        "policies",
        "tests/check/ok",
        "tests/check/err",
        "tests/fmt",
        "tests/engine",
    ] {
        for path in scale_files(dir) {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let once = match format(&text) {
                Ok(once) => once,
                // Files with syntax errors are not formatted, by design.
                Err(FormatError::Syntax(_)) => continue,
                Err(FormatError::Unstable(why)) => panic!("{}: {why}", path.display()),
            };
            formatted_files += 1;
            let twice = format(&once).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            assert_eq!(once, twice, "{}: fmt is not idempotent", path.display());

            let before = check_text(&text, &options);
            let after = check_text(&once, &options);
            assert_eq!(
                before.policies,
                after.policies,
                "{}: the checked policies changed",
                path.display()
            );
            let codes = |c: &policyctl::check::Checked| {
                c.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>()
            };
            assert_eq!(
                codes(&before),
                codes(&after),
                "{}: the diagnostics changed",
                path.display()
            );
        }
    }
    assert!(
        formatted_files > 40,
        "only {formatted_files} files were formatted"
    );
}

#[test]
fn layout_matches_the_snapshots() {
    for path in scale_files("tests/fmt") {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let out = format(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fmt"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, out);
        });
    }
}
