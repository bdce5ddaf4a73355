//! The TextMate grammar of editors/vscode/, tokenised by the library VS Code itself uses
//! (vscode-textmate with vscode-oniguruma, from npm; `.ci/run` runs `npm ci` in
//! editors/vscode): every example policy and `check` fixture, and each token class on a
//! sample.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

mod support;

/// One token: its text and its scopes, outermost first.
type Token = (String, Vec<String>);

/// The tokens of every line, per file.
fn tokenise(files: &[PathBuf]) -> Vec<(PathBuf, Vec<Vec<Token>>)> {
    let root = support::root();
    let vscode = root.join("editors/vscode");
    assert!(
        vscode.join("node_modules/vscode-textmate").is_dir(),
        "the grammar's test needs vscode-textmate: run `npm ci --prefix editors/vscode` (.ci/run does)"
    );
    let out = Command::new("node")
        .arg(vscode.join("test/tokenize.js"))
        .arg(vscode.join("syntaxes/scale.tmLanguage.json"))
        .args(files)
        .output()
        .expect("Node.js is needed to run vscode-textmate (.ci/run checks for it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let lines = f["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|line| {
                    line.as_array()
                        .unwrap()
                        .iter()
                        .map(|t| {
                            let scopes = t["scopes"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|s| s.as_str().unwrap().to_string())
                                .collect();
                            (t["text"].as_str().unwrap().to_string(), scopes)
                        })
                        .collect()
                })
                .collect();
            (PathBuf::from(f["file"].as_str().unwrap()), lines)
        })
        .collect()
}

fn scale_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(support::root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "scale"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_and_fixture_is_tokenised_with_nothing_left_unclassified() {
    let files: Vec<PathBuf> = scale_files("policies")
        .into_iter()
        .chain(scale_files("tests/check/ok"))
        .collect();
    assert!(files.len() >= 12);
    let keywords: Vec<&str> = policyctl::check::RESERVED
        .iter()
        .copied()
        .chain(["dry-run", "min", "max"])
        .collect();
    for (file, lines) in tokenise(&files) {
        for (n, line) in lines.iter().enumerate() {
            for (text, scopes) in line {
                let inner = scopes.last().unwrap();
                // Every visible character belongs to some class of the language.
                assert!(
                    text.trim().is_empty() || scopes.len() > 1,
                    "{}:{}: `{text}` has no scope",
                    file.display(),
                    n + 1
                );
                assert!(
                    !inner.starts_with("invalid"),
                    "{}:{}: `{text}` is marked {inner}",
                    file.display(),
                    n + 1
                );
                // What the grammar calls a keyword is one of the language's.
                if inner.starts_with("keyword.other.scale")
                    || inner.starts_with("storage.type")
                    || inner.starts_with("keyword.operator.logical")
                {
                    assert!(
                        keywords.contains(&text.as_str()),
                        "{}:{}: `{text}` is not a keyword",
                        file.display(),
                        n + 1
                    );
                }
            }
        }
    }
}

#[test]
fn each_token_class_on_a_sample() {
    let dir = support::scratch("editors-sample");
    let sample = r##"# a comment with "quotes" and 5m inside
policy "shop/web" {
  target k8s "shop/deployment/web"
  replicas 2..20
  every 15s
  timezone "Asia/Kolkata"
  dry-run
  metric cpu = prometheus r#"sum(rate(x{code="500"}[5m]))"#
  metric mem = prometheus "avg(container_memory_working_set_bytes)"
  let busy = ceil(cpu / 5) ?? current
  track busy per replica 5
  when mem > 600MiB and not cpu < 45% for 5m scale up by 2
  limit down select min
  stabilize down 250ms
  schedule "sale" {
    on mon..fri, sat from 08:00 to 18:30 in "Europe/Berlin" except 2026-12-25
    from 2026-12-24T09:00 to 2026-12-27
    cron "0 9 * * 1-5" for 8h
    replicas at least 4
  }
}
"##;
    let file = dir.join("sample.scale");
    std::fs::write(&file, sample).unwrap();
    let lines = tokenise(std::slice::from_ref(&file)).remove(0).1;
    let scope_of = |line: usize, text: &str| -> String {
        lines[line - 1]
            .iter()
            .find(|(t, _)| t == text)
            .unwrap_or_else(|| panic!("line {line} has no token `{text}`: {:?}", lines[line - 1]))
            .1
            .join(" ")
    };
    let has = |line: usize, text: &str, scope: &str| {
        let scopes = scope_of(line, text);
        assert!(
            scopes.contains(scope),
            "line {line}: `{text}` is {scopes}, not {scope}"
        );
    };
    // Comments, whatever they hold.
    has(
        1,
        "# a comment with \"quotes\" and 5m inside",
        "comment.line.number-sign.scale",
    );
    // Keywords and names.
    has(2, "policy", "storage.type.policy.scale");
    has(2, "\"shop/web\"", "entity.name.section.policy.scale");
    has(3, "target", "keyword.other.scale");
    has(3, "k8s", "entity.name.type.actuator.scale");
    has(7, "dry-run", "keyword.other.dry-run.scale");
    has(8, "cpu", "variable.other.definition.scale");
    has(8, "prometheus", "entity.name.type.source.scale");
    has(10, "ceil", "support.function.scale");
    has(10, "??", "keyword.operator.fallback.scale");
    has(10, "current", "variable.language.current.scale");
    has(12, "and", "keyword.operator.logical.scale");
    has(12, "not", "keyword.operator.logical.scale");
    has(13, "min", "keyword.other.scale");
    // Strings: plain, and raw ones holding PromQL (quotes inside do not end them).
    has(3, "shop/deployment/web", "string.quoted.double.scale");
    has(
        8,
        "sum(rate(x{code=\"500\"}[5m]))",
        "meta.embedded.promql.scale",
    );
    has(
        8,
        "sum(rate(x{code=\"500\"}[5m]))",
        "string.quoted.raw.scale",
    );
    has(
        9,
        "avg(container_memory_working_set_bytes)",
        "string.quoted.double.scale",
    );
    // Numbers, units and durations.
    has(4, "2", "constant.numeric.scale");
    has(4, "..", "keyword.operator.range.scale");
    has(5, "15", "constant.numeric.duration.scale");
    has(5, "s", "keyword.other.unit.scale");
    has(12, "600", "constant.numeric.quantity.scale");
    has(12, "MiB", "keyword.other.unit.scale");
    has(12, "%", "keyword.other.unit.scale");
    has(14, "250", "constant.numeric.duration.scale");
    has(14, "ms", "keyword.other.unit.scale");
    has(18, "8", "constant.numeric.duration.scale");
    // Times, dates, days and zones.
    has(16, "08:00", "constant.numeric.time.scale");
    has(16, "18:30", "constant.numeric.time.scale");
    has(16, "mon", "constant.language.day.scale");
    has(16, "sat", "constant.language.day.scale");
    has(
        16,
        "\"Europe/Berlin\"",
        "string.quoted.double.timezone.scale",
    );
    has(6, "\"Asia/Kolkata\"", "string.quoted.double.timezone.scale");
    has(16, "2026-12-25", "constant.numeric.date.scale");
    has(17, "2026-12-24T09:00", "constant.numeric.date.scale");
    has(18, "cron", "keyword.other.scale");
    has(18, "0 9 * * 1-5", "string.quoted.double.scale");
}

#[test]
fn a_unit_the_language_lacks_is_marked() {
    let dir = support::scratch("editors-invalid");
    let file = dir.join("bad.scale");
    std::fs::write(&file, "policy \"a\" {\n  every 15mins\n}\n").unwrap();
    let lines = tokenise(std::slice::from_ref(&file)).remove(0).1;
    let (text, scopes) = &lines[1].iter().find(|(t, _)| t.starts_with("15")).unwrap();
    assert_eq!(text, "15mins");
    assert!(
        scopes.last().unwrap().starts_with("invalid.illegal.unit"),
        "{scopes:?}"
    );
}

/// The extension packs into a `.vsix` with @vscode/vsce (the README's command), with
/// its grammar, its client and the language client library, and without the test tools.
#[test]
fn the_extension_packs_into_a_vsix() {
    let dir = support::scratch("editors-vsix");
    let vscode = support::root().join("editors/vscode");
    let vsix = dir.join("policyctl-scale.vsix");
    let vsce = vscode.join("node_modules/@vscode/vsce/vsce");
    assert!(
        vsce.is_file(),
        "run `npm ci --prefix editors/vscode` (.ci/run does)"
    );
    let out = Command::new("node")
        .arg(&vsce)
        .args([
            "package",
            "--allow-missing-repository",
            "--skip-license",
            "--out",
        ])
        .arg(&vsix)
        .current_dir(&vscode)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&vsix).unwrap().len() > 10_000);
    for wanted in [
        "package.json",
        "extension.js",
        "language-configuration.json",
        "scale.tmLanguage.json",
        "vscode-languageclient/",
    ] {
        assert!(
            printed.contains(wanted),
            "`{wanted}` is not packed:\n{printed}"
        );
    }
    for unwanted in [
        "vscode-textmate",
        "vscode-oniguruma",
        "tokenize.js",
        "@vscode/vsce",
    ] {
        assert!(
            !printed.contains(unwanted),
            "`{unwanted}` is packed:\n{printed}"
        );
    }
}

/// editors/vim's syntax file, for Vim and Neovim without tree-sitter, in headless
/// Neovim (Debian's package; `.ci/run` installs it): the group at each sample place.
#[test]
fn the_vim_syntax_classifies_a_sample_in_neovim() {
    let nvim = ["/usr/bin/nvim", "/usr/local/bin/nvim"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("Neovim is not installed: `.ci/run` installs Debian's `neovim` package");
    let dir = support::scratch("editors-vim");
    let sample = r##"# 5m in a comment
policy "web" {
  target k8s "x/deployment/web"
  replicas 2..20
  dry-run
  metric cpu = prometheus r#"rate(x{code="500"}[5m])"#
  when cpu > 600MiB and not current < 45% for 5m scale up by 2
  let b = max(cpu, 2) ?? 1
  schedule "s" {
    on mon..fri from 08:00 to 18:30 in "Europe/Berlin" except 2026-12-25
  }
  every 15mins
}
"##;
    let file = dir.join("sample.scale");
    std::fs::write(&file, sample).unwrap();
    // (needle, bytes into it, group).
    let expected = [
        ("5m in a comment", 0, "scaleComment"),
        ("policy", 0, "scaleDeclaration"),
        ("target", 0, "scaleKeyword"),
        ("\"x/deployment", 2, "scaleString"),
        ("2..20", 0, "scaleNumber"),
        ("..20", 0, "scaleOperator"),
        ("dry-run", 4, "scaleKeyword"),
        ("rate(x{code", 0, "scaleRawString"),
        ("600MiB", 0, "scaleQuantity"),
        ("600MiB", 4, "scaleUnit"),
        ("and not", 0, "scaleLogical"),
        ("current <", 0, "scaleCurrent"),
        ("45%", 2, "scaleUnit"),
        ("5m scale", 0, "scaleDuration"),
        ("max(", 0, "scaleFunction"),
        ("??", 0, "scaleOperator"),
        ("schedule", 0, "scaleDeclaration"),
        ("mon..", 0, "scaleDay"),
        ("08:00", 0, "scaleTime"),
        ("Europe/Berlin", 3, "scaleZone"),
        ("2026-12-25", 0, "scaleDate"),
        ("15mins", 0, "scaleBadUnit"),
    ];
    let queries: Vec<[usize; 2]> = expected
        .iter()
        .map(|(needle, delta, _)| {
            let at = sample.find(needle).unwrap() + delta;
            let line = sample[..at].matches('\n').count() + 1;
            let column = at - sample[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
            [line, column]
        })
        .collect();
    let out = dir.join("out.json");
    let status = Command::new(nvim)
        .args(["--headless", "--clean", "-n", "-c"])
        .arg(format!(
            "luafile {}",
            support::root().join("tests/lsp/syntax.lua").display()
        ))
        .env("RTP", support::root().join("editors/vim"))
        .env("FILE", &file)
        .env("QUERIES", serde_json::to_string(&queries).unwrap())
        .env("OUT", &out)
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(got["filetype"], "scale");
    let groups: Vec<&str> = got["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    let wanted: Vec<&str> = expected.iter().map(|(_, _, g)| *g).collect();
    for ((needle, _, want), got) in expected.iter().zip(&groups) {
        assert_eq!(got, want, "at `{needle}`: all {groups:?}");
    }
    assert_eq!(groups, wanted);
}
