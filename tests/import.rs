//! `policyctl import`: the Membrane fixture (a team's real HPAs and ScaledObjects) and
//! features.yaml convert to the `.scale` files kept beside them, which pass `check
//! --deny-warnings` and their behaviour tests (worked out from HPA's and KEDA's documented
//! algorithms); what cannot be converted is named with its line and column.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use support::{Run, policyctl, scratch};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `policyctl import tests/import/YAML --prometheus-templates tests/import/ADAPTER`.
fn import_fixture(yaml: &str, adapter: &str) -> Run {
    let (yaml, adapter) = (
        format!("tests/import/{yaml}"),
        format!("tests/import/{adapter}"),
    );
    policyctl(
        root(),
        &["import", &yaml, "--prometheus-templates", &adapter],
    )
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/import").join(name)).unwrap()
}

#[test]
fn the_membrane_fixture_converts_to_the_kept_policies() {
    let run = import_fixture("membrane.yaml", "adapter.yaml");
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out, expected("membrane.scale"));
    // Five objects, five policies, targets the kubernetes actuator's ids.
    assert_eq!(run.out.matches("\npolicy \"membrane/").count(), 5);
    assert!(
        run.out
            .contains("target kubernetes \"membrane/deployment/api\"")
    );
    // What the authors probably did not mean is said, with where.
    assert!(
        run.err.contains("membrane.yaml:125:20: warning: trigger 0: `threshold: 0.45` with metricType AverageValue"),
        "{}",
        run.err
    );
    assert!(
        run.err.contains("membrane.yaml:34:1: warning: `membrane/deployment/instant-tasks-worker` is also scaled by ScaledObject"),
        "{}",
        run.err
    );
}

#[test]
fn the_kept_policies_pass_check_and_their_behaviour_tests() {
    let check = policyctl(root(), &["check", "--deny-warnings", "tests/import"]);
    assert_eq!(check.code, 0, "{}{}", check.out, check.err);
    let test = policyctl(root(), &["test", "tests/import"]);
    assert_eq!(test.code, 0, "{}{}", test.out, test.err);
    assert!(test.out.contains("17 passed, 0 failed"), "{}", test.out);
}

#[test]
fn every_supported_field_converts() {
    let run = import_fixture("features.yaml", "features-adapter.yaml");
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out, expected("features.scale"));
    assert!(
        run.err
            .contains("features.yaml:46:5: note: skipped Deployment `web`"),
        "{}",
        run.err
    );
}

#[test]
fn without_templates_a_pods_metric_is_a_placeholder_that_check_rejects() {
    let dir = scratch("import-placeholder");
    let run = policyctl(root(), &["import", "tests/import/membrane.yaml"]);
    assert_eq!(run.code, 1, "{}", run.err);
    assert!(
        run.err.contains(
            "membrane.yaml:49:9: not converted: Pods metric `instant_tasks_jobs_total`: no PromQL"
        ),
        "{}",
        run.err
    );
    std::fs::write(dir.join("out.scale"), &run.out).unwrap();
    let check = policyctl(&dir, &["check", "out.scale"]);
    assert_eq!(check.code, 1);
    assert!(
        check.out.contains("scale::invalid-promql") || check.err.contains("scale::invalid-promql")
    );
    // --allow-partial: the same output, exit 0.
    let partial = policyctl(
        root(),
        &["import", "--allow-partial", "tests/import/membrane.yaml"],
    );
    assert_eq!((partial.code, partial.out), (0, run.out));
}

#[test]
fn out_writes_one_file_per_object_and_stdin_reads_a_stream() {
    let dir = scratch("import-out");
    let out = dir.join("policies");
    let run = policyctl(
        root(),
        &[
            "import",
            "tests/import/membrane.yaml",
            "--prometheus-templates",
            "tests/import/adapter.yaml",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out, "");
    let api = std::fs::read_to_string(out.join("membrane/api-hpa.scale")).unwrap();
    assert!(api.contains("policy \"membrane/api-hpa\""));
    let check = policyctl(&dir, &["check", "--deny-warnings", "policies"]);
    assert_eq!(check.code, 0, "{}{}", check.out, check.err);
    assert_eq!(std::fs::read_dir(out.join("membrane")).unwrap().count(), 5);

    let mut child = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(expected("features.yaml").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Without the adapter's rules the two External metrics are placeholders: exit 1.
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout.matches("\npolicy \"").count(), 4, "{stdout}");
}

fn import_text(name: &str, text: &str) -> Run {
    let dir = scratch(name);
    std::fs::write(dir.join("in.yaml"), text).unwrap();
    policyctl(&dir, &["import", "in.yaml"])
}

#[test]
fn malformed_yaml_says_where_and_exits_2() {
    let run = import_text(
        "import-bad-yaml",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec: [1, 2\n  minReplicas: 1\n",
    );
    assert_eq!(run.code, 2, "{}", run.err);
    assert!(run.err.contains("in.yaml:"), "{}", run.err);
    assert!(run.err.contains("malformed YAML"), "{}", run.err);
    let missing = policyctl(root(), &["import", "tests/import/nothing-here.yaml"]);
    assert_eq!(missing.code, 2);
    assert!(missing.err.contains("cannot read"), "{}", missing.err);
}

#[test]
fn unsupported_fields_and_kinds_are_named_with_their_place() {
    let run = import_text(
        "import-partial",
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: kafka-consumer, namespace: events}
spec:
  scaleTargetRef: {name: consumer}
  idleReplicaCount: 0
  minReplicaCount: 1
  triggers:
    - type: kafka
      metadata: {topic: orders, lagThreshold: "50"}
    - type: prometheus
      metadata: {query: sum(lag), threshold: "5", frobnicate: "yes"}
  surprise: true
---
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {name: batch, namespace: events}
---
apiVersion: autoscaling/v3
kind: HorizontalPodAutoscaler
metadata: {name: future}
"#,
    );
    assert_eq!(run.code, 1, "{}", run.err);
    for expected in [
        "in.yaml:6:21: not converted: `idleReplicaCount`",
        "in.yaml:9:13: not converted: trigger type `kafka`",
        "in.yaml:12:51: not converted: `metadata.frobnicate` has no policyctl equivalent",
        "in.yaml:13:3: not converted: `spec.surprise` has no policyctl equivalent",
        "in.yaml:15:1: not converted: ScaledJob `batch` cannot be imported",
        "in.yaml:19:13: not converted: HorizontalPodAutoscaler `future` has apiVersion `autoscaling/v3`",
    ] {
        assert!(
            run.err.contains(expected),
            "missing `{expected}` in:\n{}",
            run.err
        );
    }
    // The output names what it left out, and still checks.
    assert!(
        run.out
            .contains("# NOT CONVERTED (line 9): trigger type `kafka`"),
        "{}",
        run.out
    );
    let dir = scratch("import-partial-check");
    std::fs::write(dir.join("out.scale"), &run.out).unwrap();
    let check = policyctl(&dir, &["check", "--deny-warnings", "out.scale"]);
    assert_eq!(check.code, 0, "{}{}", check.out, check.err);
}

#[test]
fn input_without_an_autoscaler_is_an_error() {
    let run = import_text(
        "import-none",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    assert_eq!(run.code, 1);
    assert!(
        run.err
            .contains("no HorizontalPodAutoscaler or ScaledObject"),
        "{}",
        run.err
    );
}

/// Six hours of an instant-tasks queue, and the count KEDA's HPA wanted for it three
/// minutes late, as kube-state-metrics exports it: `shadow` replays the imported policy
/// beside it.
#[test]
fn shadow_compares_a_policy_with_the_live_autoscaler_on_a_real_prometheus() {
    let dir = scratch("import-shadow");
    let end = chrono::Utc::now().timestamp() / 60 * 60 - 60;
    let start = end - 6 * 3600;
    let jobs = |i: i64| -> f64 {
        let phase = (i % 120) as f64;
        if phase < 60.0 {
            10.0 + phase * 1.5
        } else {
            100.0 - (phase - 60.0) * 1.5
        }
    };
    let mut om = String::from("# TYPE instant_tasks_jobs_active gauge\n");
    for (i, t) in (start..=end).step_by(60).enumerate() {
        om.push_str(&format!(
            "instant_tasks_jobs_active {} {t}\n",
            jobs(i as i64)
        ));
    }
    om.push_str("# TYPE instant_tasks_jobs_waiting gauge\n");
    for t in (start..=end).step_by(60) {
        om.push_str(&format!("instant_tasks_jobs_waiting 0 {t}\n"));
    }
    om.push_str("# TYPE kube_horizontalpodautoscaler_status_desired_replicas gauge\n");
    for (i, t) in (start..=end).step_by(60).enumerate() {
        // What ceil(jobs / 5) asked for three minutes before, within 2..20.
        let late = jobs((i as i64 - 3).max(0));
        let desired = ((late / 5.0).ceil()).clamp(2.0, 20.0);
        om.push_str(&format!(
            "kube_horizontalpodautoscaler_status_desired_replicas{{namespace=\"membrane\",horizontalpodautoscaler=\"keda-hpa-instant-tasks-worker-scaler\"}} {desired} {t}\n"
        ));
    }
    om.push_str("# EOF\n");
    let prometheus = support::backfilled(&dir, &om);
    let end_at = chrono::DateTime::from_timestamp(end, 0)
        .unwrap()
        .to_rfc3339();
    let against = r#"kube_horizontalpodautoscaler_status_desired_replicas{namespace="membrane",horizontalpodautoscaler="keda-hpa-instant-tasks-worker-scaler"}"#;
    let policies = root().join("tests/import/membrane.scale");
    let plot = dir.join("shadow.svg");
    let args = |format: &'static str| {
        vec![
            "shadow".to_string(),
            policies.display().to_string(),
            "--policy".into(),
            "membrane/instant-tasks-worker-scaler".into(),
            "--prometheus".into(),
            prometheus.url(),
            "--since".into(),
            "6h".into(),
            "--end".into(),
            end_at.clone(),
            "--against".into(),
            against.into(),
            "--plot".into(),
            plot.display().to_string(),
            "--format".into(),
            format.into(),
        ]
    };
    let json_args = args("json");
    let run = policyctl(
        &dir,
        &json_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    let v: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    let d = &v["divergence"];
    let (ticks, compared) = (
        d["ticks"].as_u64().unwrap(),
        d["compared"].as_u64().unwrap(),
    );
    // 6 hours at `every 15s`, the live count known throughout.
    assert!(ticks >= 6 * 240 - 4, "{ticks}");
    assert_eq!(compared, ticks);
    let hours = |k: &str| d[k].as_f64().unwrap();
    let total = hours("hours_above") + hours("hours_below") + hours("hours_equal");
    assert!(
        (total - compared as f64 * 15.0 / 3600.0).abs() < 1e-6,
        "{d}"
    );
    // Three minutes late on a rising load: the live count lags below ours.
    assert!(hours("hours_above") > 0.5, "{d}");
    assert!(
        d["events_ours"].as_u64().unwrap() > 10 && d["events_theirs"].as_u64().unwrap() > 10,
        "{d}"
    );
    let gap = &d["largest_gap"];
    assert!(gap["difference"].as_f64().unwrap().abs() >= 1.0, "{gap}");
    // Each tick's pair is there for a script to plot or join.
    let first = &v["ticks"][0];
    assert!(
        first["ours"].is_u64() && first["theirs"].is_f64(),
        "{first}"
    );
    // Replica-hours: the other's mean count times six hours is about what it asked for.
    let theirs = hours("replica_hours_theirs");
    assert!(theirs > 6.0 * 2.0 && theirs < 6.0 * 20.0, "{d}");

    let human_args = args("human");
    let human = policyctl(
        &dir,
        &human_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(human.code, 0, "{}", human.err);
    for needle in [
        "replica-hours",
        "scale events",
        "hours above the live count",
        "largest gap:",
    ] {
        assert!(human.out.contains(needle), "{needle}:\n{}", human.out);
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    if let Ok(keep) = std::env::var("POLICYCTL_KEEP_PLOT") {
        std::fs::write(keep, &svg).unwrap();
    }
    assert!(
        svg.contains("live autoscaler (--against)"),
        "the plot names the other count"
    );

    // An unreachable Prometheus is a clear error, exit 2.
    let mut bad = json_args.clone();
    bad[5] = "http://127.0.0.1:9".into();
    let down = policyctl(&dir, &bad.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(down.code, 2, "{}", down.err);
    assert!(down.err.contains("cannot fetch history"), "{}", down.err);
}

mod mutated {
    //! Import never panics, and what it writes always parses: the fixtures with lines
    //! dropped, repeated and given other values, at random (bounded; more with
    //! PROPTEST_CASES).
    use policyctl::import::{self, Options, yaml};
    use proptest::prelude::*;

    const VALUES: &[&str] = &[
        "",
        "0",
        "-1",
        "\"5\"",
        "1e400",
        "[]",
        "{}",
        "null",
        "Max",
        "Disabled",
        "\"??\"",
        "\"0 8 * * *\"",
        "Value",
        "AverageValue",
        "\"x ? y : z\"",
        "~",
        "&a b",
        "*a",
        "\"\\u0000\"",
    ];

    fn fixture() -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import");
        ["membrane.yaml", "features.yaml"]
            .iter()
            .map(|f| std::fs::read_to_string(root.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn mutated_manifests(edits in proptest::collection::vec((0usize..400, 0usize..3, 0usize..VALUES.len()), 1..6)) {
            let mut lines: Vec<String> = fixture().lines().map(str::to_string).collect();
            for (at, kind, value) in edits {
                if lines.is_empty() {
                    break;
                }
                let i = at % lines.len();
                match kind {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let copy = lines[i].clone();
                        lines.insert(i, copy);
                    }
                    _ => {
                        if let Some(colon) = lines[i].find(": ") {
                            lines[i] = format!("{}: {}", &lines[i][..colon], VALUES[value]);
                        }
                    }
                }
            }
            let text = lines.join("\n");
            if let Ok(docs) = yaml::documents(&text) {
                let outcome = import::import(&docs, Options::default());
                for imported in outcome.imported {
                    prop_assert!(
                        policyctl::syntax::format::format(&imported.text).is_ok(),
                        "import wrote text that does not parse:\n{}",
                        imported.text
                    );
                }
            }
        }
    }
}
