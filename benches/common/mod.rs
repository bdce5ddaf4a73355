//! What several benchmarks share: generated policy files, and a service over a
//! generated fleet.
#![allow(dead_code)]

pub mod service;

/// Four policies in the style of `policies/`: PromQL, a `let`, several rule kinds,
/// limits and a schedule.
pub fn file(n: usize) -> String {
    format!(
        r##"# generated file {n}
policy "web-{n}" {{
  target k8s "web/deployment/web-{n}"
  replicas 2..10
  metric cpu = prometheus r#"sum(rate(container_cpu_usage_seconds_total{{namespace="web", pod=~"web-{n}-.*"}}[2m])) / sum(kube_pod_container_resource_requests{{namespace="web", resource="cpu"}})"#
  track cpu at 50%
  stabilize down 300s
  limit down 50% per 60s
  limit up 100% per 60s
}}

policy "worker-{n}" {{
  target k8s "jobs/deployment/worker-{n}"
  replicas 2..20
  metric jobs = prometheus r#"sum(jobs_active{{queue="q{n}"}}) + sum(jobs_waiting{{queue="q{n}"}})"#
  track jobs per replica 5
  limit up 4 per 60s
}}

policy "django-{n}" {{
  target k8s "web/deployment/django-{n}"
  replicas 10..20
  metric rps = prometheus r#"sum(rate(django_http_requests_total{{app="d{n}"}}[2m]))"#
  metric p95 = prometheus r#"histogram_quantile(0.95, sum by (le) (rate(django_latency_seconds_bucket{{app="d{n}"}}[5m])))"#
  let in_flight = rps * p95
  desired = in_flight / (8 * 4)
  buffer 10%
}}

policy "standby-{n}" {{
  target command "standby-{n}"
  replicas 1..2
  timezone "Asia/Kolkata"
  metric cpu = prometheus r#"1 - avg(rate(node_cpu_seconds_total{{mode="idle", job="s{n}"}}[2m]))"#
  when cpu > 80% for 5m scale up by 1
  when cpu < 40% for 20m scale down by 1
  schedule "business-hours" {{
    on mon..sat from 09:00 to 19:00
    replicas at least 2
  }}
}}
"##
    )
}
