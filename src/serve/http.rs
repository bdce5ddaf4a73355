//! The HTTP API: `/metrics`, `/healthz`, `/readyz`, `/v1/policies`, `/v1/files`, and
//! manual overrides. Overrides need the configured bearer token, compared in constant
//! time; with no token configured they are refused.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::persist::Override;
use super::{LastTick, Service, Slot};

/// `/healthz` fails when the scheduler has not run for this long (it is stuck).
const STUCK_AFTER_MS: i64 = 30_000;

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/policies", get(policies))
        .route("/v1/policies/{name}", get(policy))
        .route(
            "/v1/policies/{name}/override",
            post(set_override).delete(delete_override),
        )
        .route("/v1/files", get(files))
        .with_state(service)
}

/// Connections served at once; more wait in the kernel's accept queue, holding no
/// descriptor of ours.
pub const MAX_CONNECTIONS: usize = 256;
/// A client has this long to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer, idle or not (a client reconnects).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The largest request body read (an override is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Serve the API from a thread and a runtime of its own: however hard the API is
/// pressed, it runs on one thread, and the scheduler's runtime never waits for it.
pub fn spawn(
    service: Arc<Service>,
    listener: std::net::TcpListener,
) -> Result<std::thread::JoinHandle<()>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    std::thread::Builder::new()
        .name("policyctl-http".into())
        .spawn(move || runtime.block_on(serve(service, listener)))
        .map_err(|e| format!("cannot start the HTTP thread: {e}"))
}

async fn serve(service: Arc<Service>, listener: std::net::TcpListener) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the HTTP server cannot start");
            return;
        }
    };
    let app = router(service).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut failing = false;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            Err(e) => {
                // Out of descriptors, for one: wait, and say so once.
                if !failing {
                    tracing::error!(error = %e, "the HTTP server cannot accept connections");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(app),
                );
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(service): State<Arc<Service>>) -> Response {
    let age = Utc::now().timestamp_millis() - service.heartbeat.load(Ordering::Acquire);
    if age > STUCK_AFTER_MS && service.ready.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the scheduler has not run for {} s\n", age / 1000),
        )
            .into_response();
    }
    "ok\n".into_response()
}

async fn readyz(State(service): State<Arc<Service>>) -> Response {
    let state_error = service.state_error.lock().ok().and_then(|e| e.clone());
    if let Some(why) = state_error {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the state file cannot be written, so no decision is applied: {why}\n"
            ),
        )
            .into_response();
    }
    if service.ready.load(Ordering::Acquire) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

#[derive(Serialize)]
struct PolicyView {
    name: String,
    file: String,
    target: String,
    actuator: String,
    replicas: String,
    every: String,
    dry_run: bool,
    #[serde(rename = "override")]
    manual: Option<Override>,
    last: Option<serde_json::Value>,
}

fn view(slot: &Slot) -> PolicyView {
    let p = slot.policy();
    let last = slot.last();
    PolicyView {
        name: slot.name.clone(),
        file: slot
            .file
            .lock()
            .map(|f| f.display().to_string())
            .unwrap_or_default(),
        target: p.target.id.clone(),
        actuator: p.target.actuator.clone(),
        replicas: format!("{}..{}", p.min, p.max),
        every: crate::model::show_duration(p.every),
        dry_run: p.dry_run,
        manual: slot.manual(),
        last: last.as_deref().map(LastTick::to_json),
    }
}

async fn policies(State(service): State<Arc<Service>>) -> Response {
    let all: Vec<PolicyView> = service.all_slots().iter().map(|s| view(s)).collect();
    Json(json!({ "policies": all })).into_response()
}

async fn policy(State(service): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    match service.slot(&name) {
        Some(slot) => Json(view(&slot)).into_response(),
        None => not_found(&name),
    }
}

async fn files(State(service): State<Arc<Service>>) -> Response {
    Json(json!({ "files": service.file_statuses() })).into_response()
}

fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("no policy `{name}`") })),
    )
        .into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Whether the request carries the configured token. Both sides are hashed first, so
/// the comparison takes the same time whatever their lengths and contents.
fn authorised(service: &Service, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = &service.token else {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "overrides are disabled: the configuration sets no override_token",
        )));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    if given.is_empty() || !bool::from(a.as_slice().ct_eq(b.as_slice())) {
        return Err(Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    replicas: u32,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

async fn set_override(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorised(&service, &headers) {
        return *r;
    }
    let body: OverrideBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"replicas\": N, \"until\": \"RFC 3339\"}}: {e}"),
            );
        }
    };
    let now = Utc::now();
    if body.until.is_some_and(|u| u <= now) {
        return refuse(StatusCode::BAD_REQUEST, "`until` is in the past");
    }
    let manual = Override {
        replicas: body.replicas,
        until: body.until,
        set_at: now,
    };
    if !service.set_override(&name, Some(manual)).await {
        return not_found(&name);
    }
    tracing::info!(policy = %name, replicas = body.replicas, until = ?body.until, "manual override set");
    Json(json!({ "policy": name, "override": manual })).into_response()
}

async fn delete_override(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorised(&service, &headers) {
        return *r;
    }
    if !service.set_override(&name, None).await {
        return not_found(&name);
    }
    tracing::info!(policy = %name, "manual override deleted");
    Json(json!({ "policy": name, "override": null })).into_response()
}
