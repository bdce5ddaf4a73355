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

fn expected(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/import").join(name)).unwrap()
}

#[test]
fn the_membrane_fixture_converts_to_the_kept_policies() {
    let run = policyctl(
        root(),
        &[
            "import",
            "tests/import/membrane.yaml",
            "--prometheus-templates",
            "tests/import/adapter.yaml",
        ],
    );
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
    let run = policyctl(
        root(),
        &[
            "import",
            "tests/import/features.yaml",
            "--prometheus-templates",
            "tests/import/features-adapter.yaml",
        ],
    );
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
