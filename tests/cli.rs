//! The command line as scripts and CI see it: exit codes, bad input of every kind, the
//! machine-readable formats, and `fmt` on real files.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

mod support;

use support::Run;

/// A scratch directory removed at the end of the test.
struct Scratch(support::Scratch);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(support::scratch(name))
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    fn run(&self, args: &[&str]) -> Run {
        support::policyctl(&self.0, args)
    }
}

const GOOD: &str = "policy \"web\" {\n  target k8s \"default/deployment/web\"\n  replicas 2..10\n  metric cpu = prometheus \"avg(cpu)\"\n  track cpu at 50%\n}\n";
const BAD: &str = "policy \"web\" {\n  target k8s \"x\"\n  replicas 2..10\n  metric cpu = prometheus \"avg(cpu)\"\n  track cpuu at 50%\n  every 100\n}\n";

#[test]
fn exit_codes_follow_the_contract() {
    let dir = Scratch::new("exit");
    dir.write("good.scale", GOOD);
    assert_eq!(dir.run(&["check", "good.scale"]).code, 0);
    dir.write(
        "warn.scale",
        GOOD.replace(
            "track cpu at 50%",
            "track cpu at 50%\n  metric spare = prometheus \"x\"",
        ),
    );
    assert_eq!(
        dir.run(&["check", "warn.scale"]).code,
        0,
        "warnings alone pass"
    );
    assert_eq!(dir.run(&["check", "--deny-warnings", "warn.scale"]).code, 1);
    dir.write("bad.scale", BAD);
    assert_eq!(dir.run(&["check", "bad.scale"]).code, 1);
    assert_eq!(
        dir.run(&["check", "--format", "yaml", "good.scale"]).code,
        2,
        "bad flag"
    );
    assert_eq!(dir.run(&["frobnicate"]).code, 2, "unknown subcommand");
}

#[test]
fn default_path_is_the_current_directory_searched_recursively() {
    let dir = Scratch::new("recursive");
    dir.write("a/b/c/deep.scale", GOOD);
    dir.write("a/notes.txt", "not a policy");
    dir.write(".hidden/ignored.scale", "garbage");
    let run = dir.run(&["check"]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert!(run.out.contains("checked 1 file"), "{}", run.out);
}

#[test]
fn all_errors_of_all_files_in_one_run() {
    let dir = Scratch::new("all");
    dir.write("one.scale", BAD);
    dir.write("two.scale", BAD.replace("\"web\"", "\"api\""));
    let run = dir.run(&["check", "--format", "json", "."]);
    assert_eq!(run.code, 1);
    let report: Value =
        serde_json::from_str(&run.out).unwrap_or_else(|e| panic!("{e}: {}", run.out));
    assert_eq!(report["files"], 2);
    assert_eq!(report["errors"], 4, "{report:#}");
    let files: Vec<&str> = report["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["file"].as_str())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("one.scale"))
            && files.iter().any(|f| f.ends_with("two.scale"))
    );
}

#[test]
fn policy_names_are_unique_across_files() {
    let dir = Scratch::new("dupe");
    dir.write("a.scale", GOOD);
    dir.write("b.scale", GOOD);
    let run = dir.run(&["check", "."]);
    assert_eq!(run.code, 1);
    assert!(run.out.contains("scale::duplicate-policy"), "{}", run.out);
    assert!(
        run.out.contains("first defined here in"),
        "the other file is named:\n{}",
        run.out
    );
}

#[test]
fn json_report_has_positions_and_codes() {
    let dir = Scratch::new("json");
    dir.write("bad.scale", BAD);
    let run = dir.run(&["check", "--format", "json", "bad.scale"]);
    let report: Value =
        serde_json::from_str(&run.out).unwrap_or_else(|e| panic!("{e}: {}", run.out));
    let unknown = report["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["code"] == "scale::unknown-name")
        .unwrap_or_else(|| panic!("no unknown-name in {report:#}"));
    assert_eq!(unknown["severity"], "error");
    assert_eq!(unknown["file"], "bad.scale");
    assert_eq!(
        (unknown["line"].as_u64(), unknown["column"].as_u64()),
        (Some(5), Some(9))
    );
    assert_eq!(
        (unknown["end_line"].as_u64(), unknown["end_column"].as_u64()),
        (Some(5), Some(13))
    );
    assert_eq!(unknown["help"], "did you mean `cpu`?");
    let keys: Vec<&String> = unknown
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [
            "code",
            "severity",
            "message",
            "file",
            "line",
            "column",
            "end_line",
            "end_column",
            "help"
        ]
    );
}

#[test]
fn github_format_is_one_annotation_per_diagnostic() {
    let dir = Scratch::new("github");
    dir.write("bad.scale", BAD);
    let run = dir.run(&["check", "--format", "github", "bad.scale"]);
    let lines: Vec<&str> = run.out.lines().collect();
    // The typo also leaves `cpu` unused: one warning, two errors.
    assert_eq!(lines.len(), 3, "{}", run.out);
    assert!(
        lines[0].starts_with("::warning file=bad.scale,line=4,col=10,"),
        "{}",
        run.out
    );
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with("::error file=bad.scale,line=")),
        "{}",
        run.out
    );
    assert!(
        lines[1].contains(
            "title=scale%3A%3Aunknown-name::unknown name `cpuu`%0Ahelp: did you mean `cpu`?"
        ),
        "{}",
        lines[1]
    );
}

#[test]
fn sarif_is_2_1_0_with_rules_and_regions() {
    let dir = Scratch::new("sarif");
    dir.write("bad.scale", BAD);
    let run = dir.run(&["check", "--format", "sarif", "bad.scale"]);
    let sarif: Value =
        serde_json::from_str(&run.out).unwrap_or_else(|e| panic!("{e}: {}", run.out));
    assert_eq!(sarif["version"], "2.1.0");
    let run0 = &sarif["runs"][0];
    let rules = run0["tool"]["driver"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let results = run0["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["level"], "warning");
    for result in &results {
        let index = result["ruleIndex"].as_u64().unwrap_or(u64::MAX) as usize;
        assert_eq!(
            rules.get(index).map(|r| &r["id"]),
            Some(&result["ruleId"]),
            "ruleIndex points at its rule"
        );
        let region = &result["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().is_some_and(|l| l >= 1));
    }
}

#[test]
fn unreadable_and_missing_paths_are_io_errors() {
    let dir = Scratch::new("io");
    let run = dir.run(&["check", "does-not-exist.scale"]);
    assert_eq!(run.code, 2);
    assert!(
        run.err.contains("cannot read `does-not-exist.scale`"),
        "{}",
        run.err
    );

    // A file that exists but cannot be opened: a dangling symbolic link.
    #[cfg(unix)]
    {
        dir.write("good.scale", GOOD);
        std::os::unix::fs::symlink(dir.0.join("gone"), dir.0.join("dangling.scale"))
            .unwrap_or_else(|e| panic!("{e}"));
        let run = dir.run(&["check", "."]);
        assert_eq!(run.code, 2, "{}{}", run.out, run.err);
        assert!(run.err.contains("dangling.scale"), "{}", run.err);
        assert!(
            run.out.contains("checked 1 file"),
            "the readable file is still checked:\n{}",
            run.out
        );
    }
}

#[test]
fn a_directory_without_policies_is_a_usage_error() {
    let dir = Scratch::new("empty");
    dir.write("README.md", "nothing here");
    let run = dir.run(&["check", "."]);
    assert_eq!(run.code, 2);
    assert!(
        run.err.contains("no `*.scale` file under `.`"),
        "{}",
        run.err
    );
}

#[test]
fn non_utf8_is_reported_at_its_byte() {
    let dir = Scratch::new("utf8");
    dir.write(
        "latin1.scale",
        b"policy \"p\" {\n  target k8s \"caf\xe9\"\n}\n".as_slice(),
    );
    let run = dir.run(&["check", "--format", "json", "latin1.scale"]);
    assert_eq!(run.code, 1);
    let report: Value =
        serde_json::from_str(&run.out).unwrap_or_else(|e| panic!("{e}: {}", run.out));
    let d = &report["diagnostics"][0];
    assert_eq!(d["code"], "scale::invalid-utf8");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(18))
    );
}

#[test]
fn a_ten_megabyte_file_is_refused_quickly_and_clearly() {
    let dir = Scratch::new("huge");
    let mut text = String::with_capacity(10 << 20);
    while text.len() < 10 << 20 {
        text.push_str(GOOD);
    }
    dir.write("huge.scale", &text);
    dir.write("good.scale", GOOD.replace("\"web\"", "\"other\""));
    let run = dir.run(&["check", "."]);
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    assert!(run.out.contains("scale::file-too-large"), "{}", run.out);
    assert!(
        run.out
            .contains("is 10.0 MiB; a policy file may be at most 1 MiB"),
        "{}",
        run.out
    );
    assert!(
        run.out.contains("checked 2 files: 1 error, 0 warnings"),
        "{}",
        run.out
    );
}

#[test]
fn fmt_rewrites_in_place_and_check_reports() {
    let dir = Scratch::new("fmt");
    let messy = "policy \"web\"{target k8s \"default/deployment/web\" replicas 2..10 # bounds\nmetric cpu=prometheus \"avg(cpu)\" track cpu at 50% }";
    let path = dir.write("messy.scale", messy);
    let run = dir.run(&["fmt", "--check", "messy.scale"]);
    assert_eq!(run.code, 1);
    assert!(
        run.out.contains("would reformat messy.scale"),
        "{}",
        run.out
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        messy,
        "--check writes nothing"
    );

    let run = dir.run(&["fmt", "messy.scale"]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    let formatted = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        formatted,
        "policy \"web\" {\n  target k8s \"default/deployment/web\"\n  replicas 2..10  # bounds\n  metric cpu = prometheus \"avg(cpu)\"\n  track cpu at 50%\n}\n"
    );
    assert_eq!(
        dir.run(&["fmt", "--check", "messy.scale"]).code,
        0,
        "formatted output is canonical"
    );
}

#[test]
fn fmt_leaves_a_broken_file_alone() {
    let dir = Scratch::new("fmt-broken");
    let broken = "policy \"web\" {\n  replicas 2..\n}\n";
    let path = dir.write("broken.scale", broken);
    let run = dir.run(&["fmt", "broken.scale"]);
    assert_eq!(run.code, 1);
    assert!(run.err.contains("not formatted"), "{}", run.err);
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), broken);
}

#[test]
fn fmt_reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(b"policy \"a\"{target k \"x\" replicas 1..2 desired=1}")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "policy \"a\" {\n  target k \"x\"\n  replicas 1..2\n  desired = 1\n}\n"
    );
}
