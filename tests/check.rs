//! Data-driven tests of `policyctl check`: every file in `tests/check/ok/` passes with
//! no diagnostic; every file in `tests/check/err/` fails, shows the code its name
//! begins with (`unknown-name--let-after-use.scale` → `scale::unknown-name`), and
//! renders exactly as its snapshot beside it.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use policyctl::diagnostic::Code;

mod support;

/// Fixed so that "in the past" means the same thing on every run.
const NOW: &str = "2026-11-22T00:00:00Z";

fn policyctl(args: &[&str]) -> (i32, String, String) {
    let run = support::policyctl(support::root(), args);
    (run.code, run.out, run.err)
}

fn fixtures(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".scale"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {dir}");
    names
}

#[test]
fn ok_fixtures_pass_with_no_diagnostic() {
    for name in fixtures("tests/check/ok") {
        let path = format!("tests/check/ok/{name}");
        let (code, out, err) = policyctl(&["check", "--deny-warnings", "--now", NOW, &path]);
        assert_eq!(code, 0, "{path}:\n{out}{err}");
        assert!(
            out.ends_with("checked 1 file: 0 errors, 0 warnings\n"),
            "{path}:\n{out}"
        );
    }
}

#[test]
fn err_fixtures_fail_with_their_code_and_match_their_snapshot() {
    for name in fixtures("tests/check/err") {
        let stem = name.trim_end_matches(".scale");
        let code = stem.split("--").next().unwrap_or(stem);
        let path = format!("tests/check/err/{name}");
        let (status, out, err) = policyctl(&["check", "--deny-warnings", "--now", NOW, &path]);
        assert_eq!(status, 1, "{path} should fail:\n{out}{err}");
        assert!(
            out.contains(&format!("scale::{code}\n")),
            "{path} does not report scale::{code}:\n{out}"
        );
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/tests/check/err"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(stem.to_string(), out);
        });
    }
}

/// Codes that no single file can show: they are exercised by `tests/cli.rs`.
/// The configuration codes need a service configuration: `tests/serve.rs` exercises them.
const NOT_FROM_A_FIXTURE: &[Code] = &[
    Code::Io,
    Code::FileTooLarge,
    Code::UnknownActuator,
    Code::UnknownSource,
    Code::InvalidQuery,
    Code::ConfigInvalid,
    Code::PluginLoad,
];

#[test]
fn every_code_has_an_error_fixture() {
    let names = fixtures("tests/check/err");
    for code in Code::ALL {
        if NOT_FROM_A_FIXTURE.contains(code) {
            continue;
        }
        let short = code.as_str().trim_start_matches("scale::");
        assert!(
            names
                .iter()
                .any(|n| n.trim_end_matches(".scale").split("--").next() == Some(short)),
            "no fixture tests/check/err/{short}.scale for {code}"
        );
    }
}

#[test]
fn shipped_policies_pass_check_and_are_formatted() {
    let (code, out, err) = policyctl(&["check", "--deny-warnings", "--now", NOW, "policies"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    let (code, out, err) = policyctl(&["fmt", "--check", "policies"]);
    assert_eq!(code, 0, "policies/ is not in canonical layout:\n{out}{err}");
}

#[test]
fn the_diagnostics_page_lists_every_code() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/diagnostics.md"))
            .unwrap_or_else(|e| panic!("docs/diagnostics.md: {e}"));
    for code in Code::ALL {
        let row = format!(
            "| `{}` | {} | {} |",
            code.as_str(),
            code.severity().as_str(),
            code.summary()
        );
        assert!(
            page.contains(&row),
            "docs/diagnostics.md lacks the row\n{row}"
        );
    }
    // The language reference gives an example of each.
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md"))
            .unwrap_or_else(|e| panic!("docs/reference.md: {e}"));
    for code in Code::ALL {
        let row = format!("| `{}` | {}", code.as_str(), code.severity().as_str());
        assert!(
            reference.contains(&row),
            "docs/reference.md has no example row for {}",
            code.as_str()
        );
    }
}

/// policyctl.md, `check` without `--config`: a typo in a source name and an unclosed
/// PromQL parenthesis never pass `--deny-warnings` silently.
#[test]
fn without_a_configuration_sources_are_judged_by_convention() {
    let dir = support::scratch("check-convention");
    let file = dir.join("typo.scale");
    std::fs::write(
        &file,
        "policy \"typo\" {\n  target k8s \"web\"\n  replicas 1..5\n  metric cpu = promethues \"sum(rate(x[5m])\"\n  metric load = host \"load1\"\n  track cpu at 50%\n  track load per replica 2\n}\n",
    )
    .unwrap();
    let path = file.to_string_lossy().into_owned();
    let (code, out, _) = policyctl(&["check", "--format", "json", &path]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let codes: Vec<(&str, &str)> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap(), d["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            ("scale::unknown-source", "warning"),
            ("scale::invalid-promql", "error")
        ]
    );
    assert!(
        report["diagnostics"][0]["help"]
            .as_str()
            .unwrap()
            .contains("did you mean `prometheus`?")
    );
    // The typo alone: a warning, which `--deny-warnings` makes fail.
    std::fs::write(
        &file,
        "policy \"typo\" {\n  target k8s \"web\"\n  replicas 1..5\n  metric cpu = promethues \"up\"\n  track cpu at 50%\n}\n",
    )
    .unwrap();
    assert_eq!(policyctl(&["check", &path]).0, 0);
    assert_eq!(policyctl(&["check", "--deny-warnings", &path]).0, 1);
}

/// policyctl.md: `check` uses the `policyctl.ron` of a parent of the checked paths.
#[test]
fn a_configuration_beside_the_policies_is_discovered() {
    let dir = support::scratch("check-discovery");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policyctl.ron"),
        "(sources: [(name: \"host\", kind: Host)], actuators: [], policies: [\"policies\"])\n",
    )
    .unwrap();
    let file = dir.join("policies").join("web.scale");
    std::fs::write(
        &file,
        "policy \"web\" {\n  target k8s \"web\"\n  replicas 1..5\n  metric load = host \"load1\"\n  track load per replica 2\n}\n",
    )
    .unwrap();
    let path = file.to_string_lossy().into_owned();
    let (code, out, err) = policyctl(&["check", "--format", "json", &path]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("scale::unknown-actuator"), "{out}");
    // Without it, `k8s` cannot be judged, and the policy passes.
    std::fs::remove_file(dir.join("policyctl.ron")).unwrap();
    let (code, out, _) = policyctl(&["check", "--deny-warnings", &path]);
    assert_eq!(code, 0, "{out}");
}
