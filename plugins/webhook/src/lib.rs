//! The `webhook` actuator: POSTs each decision as JSON to a URL, optionally signed with
//! HMAC-SHA256, and observes through an optional GET that returns `{"replicas": N}`.
//!
//! Settings:
//! - `url`: where decisions are POSTed.
//! - `observe_url` (optional): GET, answering `{"replicas": N, "ready": true}`.
//! - `hmac_secret` (optional): signs the body; the signature goes in
//!   `X-Policyctl-Signature: sha256=<hex>`.
//!
//! Every POST carries `Idempotency-Key: <decision id>`, the same on every retry.
//! Answers: 2xx applied; 404 not found; 401/403 forbidden; 409 conflict; 429 rate
//! limited (`Retry-After` seconds honoured); 5xx unavailable; other 4xx an invalid
//! decision.

wit_bindgen::generate!({ path: "../wit", world: "actuator" });

use hmac::{Hmac, Mac};
use policyctl::actuator::config;
use policyctl::actuator::types::RateLimit;
use policyctl_plugin_sdk::http::{self, Class, Response};
use sha2::Sha256;

struct Webhook;

fn setting(key: &str) -> Result<String, ActuationError> {
    config::get(key)
        .ok_or_else(|| ActuationError::InvalidConfig(format!("setting `{key}` is missing")))
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

fn status_error(r: &Response) -> ActuationError {
    let text: String = r.text().chars().take(300).collect();
    let message = format!("HTTP {}: {text}", r.status);
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

fn sign(secret: &str, body: &[u8]) -> Result<String, ActuationError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| ActuationError::InvalidConfig(format!("hmac_secret: {e}")))?;
    mac.update(body);
    Ok(mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl Guest for Webhook {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "webhook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            target_kinds: vec!["any".into()],
        }
    }

    fn observe(target: String) -> Result<Observation, ActuationError> {
        let Some(url) = config::get("observe_url") else {
            return Err(ActuationError::Unsupported(
                "no `observe_url` is configured".into(),
            ));
        };
        let url = url.replace("{target}", &target);
        let r = http::request("GET", &url, &[("accept", "application/json")], &[])
            .map_err(transport)?;
        if !(200..300).contains(&r.status) {
            return Err(status_error(&r));
        }
        let doc: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| {
            ActuationError::InvalidConfig(format!("observe_url answered with no JSON: {e}"))
        })?;
        let replicas = doc["replicas"].as_u64().ok_or_else(|| {
            ActuationError::InvalidConfig("observe_url's answer has no `replicas` number".into())
        })?;
        Ok(Observation {
            replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
            ready: doc["ready"].as_bool().unwrap_or(true),
        })
    }

    fn apply(d: Decision) -> Result<Outcome, ActuationError> {
        let url = setting("url")?;
        let body = serde_json::json!({
            "id": d.id, "policy": d.policy, "target": d.target, "from": d.from,
            "to": d.to, "reason": d.reason, "dry_run": d.dry_run,
        })
        .to_string();
        let signature = match config::get("hmac_secret") {
            Some(secret) => Some(format!("sha256={}", sign(&secret, body.as_bytes())?)),
            None => None,
        };
        let mut headers = vec![
            ("content-type", "application/json"),
            ("idempotency-key", d.id.as_str()),
        ];
        if let Some(sig) = &signature {
            headers.push(("x-policyctl-signature", sig.as_str()));
        }
        let r = http::request("POST", &url, &headers, body.as_bytes()).map_err(transport)?;
        if !(200..300).contains(&r.status) {
            return Err(status_error(&r));
        }
        Ok(Outcome {
            replicas: d.to,
            message: format!("HTTP {}", r.status),
        })
    }
}

export!(Webhook);
