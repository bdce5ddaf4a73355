//! The `kubernetes` actuator: observes and patches the `scale` subresource of
//! `apps/v1` Deployments and StatefulSets.
//!
//! Target ids are `namespace/kind/name`, kind `deployment` or `statefulset`.
//! Settings: `api_url`, e.g. `https://kube.internal:6443`. The bearer token is added by
//! the host (`inject_headers`); the plugin never sees it.
//!
//! - observe: `GET /apis/apps/v1/namespaces/NS/deployments/NAME/scale`; ready when
//!   `status.replicas` has reached `spec.replicas`.
//! - apply: `PATCH` of the same path with `{"spec":{"replicas":N}}` as
//!   `application/merge-patch+json`; a dry run adds `?dryRun=All`, so the API server
//!   validates the change and persists nothing.

wit_bindgen::generate!({ path: "../wit", world: "actuator" });

use policyctl::actuator::config;
use policyctl::actuator::types::RateLimit;
use policyctl_plugin_sdk::http::{self, Class, Response};

struct Kubernetes;

fn scale_url(target: &str) -> Result<String, ActuationError> {
    let api = config::get("api_url")
        .ok_or_else(|| ActuationError::InvalidConfig("setting `api_url` is missing".into()))?;
    let parts: Vec<&str> = target.split('/').collect();
    let [namespace, kind, name] = parts[..] else {
        return Err(ActuationError::InvalidDecision(format!(
            "target `{target}` is not `namespace/kind/name`"
        )));
    };
    let resource = match kind.to_ascii_lowercase().as_str() {
        "deployment" | "deployments" => "deployments",
        "statefulset" | "statefulsets" => "statefulsets",
        other => {
            return Err(ActuationError::InvalidDecision(format!(
                "kind `{other}` is not deployment or statefulset"
            )));
        }
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if !valid(namespace) || !valid(name) {
        return Err(ActuationError::InvalidDecision(format!(
            "target `{target}`: namespace and name must be DNS names"
        )));
    }
    Ok(format!(
        "{}/apis/apps/v1/namespaces/{namespace}/{resource}/{name}/scale",
        api.trim_end_matches('/')
    ))
}

fn transport(e: http::Error) -> ActuationError {
    match e {
        http::Error::Denied => ActuationError::Forbidden(e.to_string()),
        http::Error::BadUrl(_) => ActuationError::InvalidConfig(e.to_string()),
        http::Error::Transport(_) | http::Error::TooLarge => {
            ActuationError::Unavailable(e.to_string())
        }
    }
}

/// A Kubernetes `Status` answer, mapped to the error kinds of the WIT world.
fn status_error(r: &Response) -> ActuationError {
    let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let message = format!(
        "HTTP {}: {}",
        r.status,
        doc["message"]
            .as_str()
            .unwrap_or(&r.text().chars().take(200).collect::<String>())
    );
    match r.class() {
        Class::NotFound => ActuationError::NotFound(message),
        Class::Forbidden => ActuationError::Forbidden(message),
        Class::Conflict => ActuationError::Conflict(message),
        Class::RateLimited(retry_after_ms) => ActuationError::RateLimited(RateLimit {
            message,
            retry_after_ms,
        }),
        Class::Unavailable => ActuationError::Unavailable(message),
        Class::Success | Class::Invalid => ActuationError::InvalidDecision(message),
    }
}

fn scale(r: &Response) -> Result<(u32, u32), ActuationError> {
    let doc: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| {
        ActuationError::Unavailable(format!("the API server answered with no JSON: {e}"))
    })?;
    let spec = doc["spec"]["replicas"].as_u64().unwrap_or(0);
    let status = doc["status"]["replicas"].as_u64().unwrap_or(0);
    Ok((
        u32::try_from(spec).unwrap_or(u32::MAX),
        u32::try_from(status).unwrap_or(u32::MAX),
    ))
}

impl Guest for Kubernetes {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "kubernetes".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            target_kinds: vec!["deployment".into(), "statefulset".into()],
        }
    }

    fn observe(target: String) -> Result<Observation, ActuationError> {
        let url = scale_url(&target)?;
        let r = http::request("GET", &url, &[("accept", "application/json")], &[])
            .map_err(transport)?;
        if r.status != 200 {
            return Err(status_error(&r));
        }
        let (spec, status) = scale(&r)?;
        Ok(Observation {
            replicas: spec,
            ready: spec == status,
        })
    }

    fn apply(d: Decision) -> Result<Outcome, ActuationError> {
        let mut url = scale_url(&d.target)?;
        if d.dry_run {
            url.push_str("?dryRun=All");
        }
        let body = serde_json::json!({ "spec": { "replicas": d.to } }).to_string();
        let headers = [
            ("content-type", "application/merge-patch+json"),
            ("accept", "application/json"),
        ];
        let r = http::request("PATCH", &url, &headers, body.as_bytes()).map_err(transport)?;
        if r.status != 200 {
            return Err(status_error(&r));
        }
        let (spec, _) = scale(&r)?;
        let message = if d.dry_run {
            format!("dry run accepted: would set {} to {}", d.target, d.to)
        } else {
            format!("{} set to {spec}", d.target)
        };
        Ok(Outcome {
            replicas: spec,
            message,
        })
    }
}

export!(Kubernetes);
