//! The HTTP API: `/metrics`, `/healthz`, `/readyz`, `/v1/policies`, `/v1/files`, and
//! manual overrides. Overrides need the configured bearer token, compared in constant
//! time; with no token configured they are refused.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::persist::Override;
use super::{LastTick, Service, Slot, api, events};

/// `/healthz` fails when the scheduler has not run for this long (it is stuck).
const STUCK_AFTER_MS: i64 = 30_000;

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/policies", get(policies))
        .route("/v1/policies/{name}", get(policy))
        .route(
            "/v1/policies/{name}/override",
            post(set_override).delete(delete_override),
        )
        .route("/v1/policies/{name}/history", get(history))
        .route("/v1/decisions", get(decisions))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/files", get(files))
        .route("/v1/status", get(status))
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
    let (id, coordination, leads) = match service.coordinator.get() {
        Some(c) => (c.id.clone(), "etcd", c.leads()),
        None => (crate::serve::coordination::default_id(), "file", true),
    };
    service
        .metrics
        .leader
        .get_or_create(&crate::serve::metrics::ByInstance {
            id,
            coordination: coordination.into(),
        })
        .set(i64::from(leads));
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
                "not ready: {} cannot be written, so no decision is applied: {why}\n",
                service.store()
            ),
        )
            .into_response();
    }
    if service.ready.load(Ordering::Acquire) {
        match service.coordinator.get() {
            Some(c) => {
                let s = c.status();
                let leader = s.leader_id.unwrap_or_else(|| "none yet".into());
                format!("ready ({}; leader: {leader})\n", s.id).into_response()
            }
            None => "ready\n".into_response(),
        }
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `Status` of docs/openapi.json: this instance, and who leads.
async fn status(State(service): State<Arc<Service>>) -> Response {
    let mut body = match service.coordinator.get() {
        Some(c) => serde_json::to_value(c.status()).unwrap_or_default(),
        None => {
            let id = crate::serve::coordination::default_id();
            json!({
                "id": id,
                "leader": true,
                "leader_id": id,
                "shards": null,
                "members": [id],
                "note": null,
            })
        }
    };
    body["coordination"] = json!(if service.coordinator.get().is_some() {
        "etcd"
    } else {
        "file"
    });
    axum::Json(body).into_response()
}

/// `Policy` of docs/openapi.json: the policy, its override, and its last tick.
fn view(slot: &Slot) -> serde_json::Value {
    let p = slot.policy();
    let file = slot
        .file
        .lock()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    let manual = slot.manual();
    let mut v = api::policy(&p, file, manual.as_ref());
    v["last"] = slot
        .last()
        .as_deref()
        .map_or(serde_json::Value::Null, LastTick::to_json);
    v["last_decision"] = slot.last_decision().unwrap_or(serde_json::Value::Null);
    v
}

async fn policies(State(service): State<Arc<Service>>) -> Response {
    let all: Vec<serde_json::Value> = service.all_slots().iter().map(|s| view(s)).collect();
    Json(json!({ "policies": all })).into_response()
}

async fn policy(State(service): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    match service.slot(&name) {
        Some(slot) => Json(view(&slot)).into_response(),
        None => not_found(&name),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    #[serde(default)]
    since: Option<String>,
}

fn since(query: &Since) -> Result<Option<DateTime<Utc>>, Box<Response>> {
    match &query.since {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                Box::new(refuse(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "`since` must be an RFC 3339 time, e.g. 2026-12-02T10:00:00Z: `{text}`"
                    ),
                ))
            }),
    }
}

async fn history(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    Query(query): Query<Since>,
) -> Response {
    let since = match since(&query) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(slot) = service.slot(&name) else {
        return not_found(&name);
    };
    let records: Vec<serde_json::Value> = slot.records(since).into_iter().map(|(_, r)| r).collect();
    Json(json!({
        "policy": name,
        "ticks": slot.history(since),
        "records": records,
    }))
    .into_response()
}

async fn decisions(State(service): State<Arc<Service>>, Query(query): Query<Since>) -> Response {
    let since = match since(&query) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut all: Vec<(DateTime<Utc>, serde_json::Value)> = service
        .all_slots()
        .iter()
        .flat_map(|s| s.records(since))
        .collect();
    all.sort_by_key(|(at, _)| *at);
    let records: Vec<serde_json::Value> = all.into_iter().map(|(_, r)| r).collect();
    Json(json!({ "records": records })).into_response()
}

/// `GET /v1/events`: Server-Sent Events `tick`, `decision` and `override`, each one
/// JSON object with an `id`, as they happen. A client that reconnects with
/// `Last-Event-ID` first gets the events it missed (of the last [`events::KEPT`]); when
/// some are no longer kept, or a client falls behind, a `lagged` event says how many
/// (`null`: unknown, e.g. an id from before a restart) and the stream goes on.
async fn events(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    use tokio::sync::broadcast::error::RecvError;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let events::Subscription { replay, lost, live } = service.events.subscribe(last);
    let sse = |e: &events::Event| {
        Event::default()
            .id(e.id.to_string())
            .event(e.name)
            .data(&*e.data)
    };
    let lagged = |missed: Option<u64>| {
        Event::default()
            .event("lagged")
            .data(json!({ "missed": missed }).to_string())
    };
    let head: Vec<Event> = (lost != Some(0))
        .then(|| lagged(lost))
        .into_iter()
        .chain(replay.iter().map(sse))
        .collect();
    let live = futures::stream::unfold(live, move |mut rx| async move {
        let event = match rx.recv().await {
            Ok(e) => sse(&e),
            Err(RecvError::Lagged(n)) => lagged(Some(n)),
            Err(RecvError::Closed) => return None,
        };
        Some((event, rx))
    });
    let stream = futures::stream::iter(head)
        .chain(live)
        .map(Ok::<_, std::convert::Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The dashboard: one page, shipped inside the binary (no build step, no CDN), that
/// reads API v1.
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        DASHBOARD,
    )
        .into_response()
}

const DASHBOARD: &str = include_str!("dashboard.html");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The OpenAPI 3.1 document of every route, kept in docs/.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

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

/// The name of the token the request carries. Every configured token is compared (each
/// hashed first), so the time taken says nothing about which one, or how much of it,
/// matched.
fn authorised(service: &Service, headers: &HeaderMap) -> Result<String, Box<Response>> {
    if service.tokens.is_empty() {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "overrides are disabled: the configuration sets no override_token",
        )));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let a = Sha256::digest(given.as_bytes());
    let mut found = None;
    for (name, token) in &service.tokens {
        let b = Sha256::digest(token.as_bytes());
        if bool::from(a.as_slice().ct_eq(b.as_slice())) {
            found = Some(name.clone());
        }
    }
    match found {
        Some(name) if !given.is_empty() => Ok(name),
        _ => Err(Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        ))),
    }
}

/// The most text kept of an override's `reason` and `author`.
const MAX_NOTE_CHARS: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    replicas: u32,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    /// Allow a count outside the policy's bounds.
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reason: Option<String>,
    /// Who asks; default: the token's name.
    #[serde(default)]
    author: Option<String>,
}

fn note(text: Option<String>) -> Option<String> {
    text.map(|t| t.chars().take(MAX_NOTE_CHARS).collect::<String>())
        .filter(|t| !t.trim().is_empty())
}

async fn set_override(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = match authorised(&service, &headers) {
        Ok(name) => name,
        Err(r) => return *r,
    };
    if let Some(answered) = elsewhere(
        &service,
        &name,
        reqwest::Method::POST,
        &headers,
        body.clone(),
    )
    .await
    {
        return answered;
    }
    let body: OverrideBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"replicas\": N, \"until\": \"RFC 3339\", \"reason\": \"…\", \"author\": \"…\", \"force\": false}}: {e}"
                ),
            );
        }
    };
    let now = Utc::now();
    if body.until.is_some_and(|u| u <= now) {
        return refuse(StatusCode::BAD_REQUEST, "`until` is in the past");
    }
    let Some(slot) = service.slot(&name) else {
        return not_found(&name);
    };
    let p = slot.policy();
    if !(p.min..=p.max).contains(&body.replicas) && !body.force {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "{} replicas is outside policy `{name}`'s bounds {}..{}; send \"force\": true to set it anyway",
                body.replicas, p.min, p.max
            ),
        );
    }
    let manual = Override {
        replicas: body.replicas,
        until: body.until,
        set_at: now,
        reason: note(body.reason),
        author: note(body.author).or(Some(token)),
        forced: !(p.min..=p.max).contains(&body.replicas),
    };
    let author = manual.author.clone().unwrap_or_default();
    if !service
        .set_override(&name, Some(manual.clone()), &author)
        .await
    {
        return not_found(&name);
    }
    tracing::info!(
        policy = %name,
        replicas = body.replicas,
        until = body.until.map(|u| u.to_rfc3339()),
        forced = manual.forced,
        author = manual.author.as_deref(),
        reason = manual.reason.as_deref(),
        "manual override set"
    );
    Json(json!({ "policy": name, "override": manual })).into_response()
}

/// The header a forwarded override carries: the id of the instance that forwarded it.
/// An override that arrives forwarded at an instance that does not lead is refused
/// rather than forwarded again.
const FORWARDED_BY: &str = "x-policyctl-forwarded-by";

/// On etcd, only the instance that leads a policy (its shard's leader) takes its
/// overrides, since another's would never reach the state: another forwards the request
/// to it and answers with its answer, or answers 503 naming it when it cannot.
async fn elsewhere(
    service: &Service,
    policy: &str,
    method: reqwest::Method,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Option<Response> {
    let coordinator = service.coordinator.get()?;
    let shard = crate::serve::coordination::shard_of(policy, coordinator.shards);
    if coordinator.ticks(shard) {
        return None;
    }
    let status = coordinator.status();
    let leader = match &status.shards {
        Some(shards) => shards.leaders.get(&shard).cloned(),
        None => status.leader_id.clone(),
    }
    .unwrap_or_else(|| "none yet".into());
    let refused = |why: &str| {
        Some(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "this instance ({}) does not lead `{policy}`{why}; send the override to its leader ({leader}, see GET /v1/status)",
                status.id
            ),
        ))
    };
    if headers.contains_key(FORWARDED_BY) {
        return refused(" (the request was forwarded here, and is not forwarded twice)");
    }
    let Some((leader, api)) = coordinator.leader_api(shard) else {
        return refused("");
    };
    let url = format!(
        "{api}/v1/policies/{}/override",
        percent_encoding::utf8_percent_encode(policy, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .timeout(Duration::from_secs(10))
        .header(FORWARDED_BY, &status.id)
        .body(body.to_vec());
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            request = request.header(name.as_str(), value);
        }
    }
    let answer = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(policy, leader = %leader, url = %url, error = %e, "an override could not be forwarded to the leader");
            return refused(&format!(" and its leader did not answer ({e})"));
        }
    };
    let code = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let kind = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = (code, [(header::CONTENT_TYPE, kind)], bytes.to_vec()).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&leader) {
        response
            .headers_mut()
            .insert("x-policyctl-forwarded-to", value);
    }
    Some(response)
}

async fn delete_override(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let author = match authorised(&service, &headers) {
        Ok(name) => name,
        Err(r) => return *r,
    };
    if let Some(answered) = elsewhere(
        &service,
        &name,
        reqwest::Method::DELETE,
        &headers,
        axum::body::Bytes::new(),
    )
    .await
    {
        return answered;
    }
    if !service.set_override(&name, None, &author).await {
        return not_found(&name);
    }
    tracing::info!(policy = %name, author = %author, "manual override deleted");
    Json(json!({ "policy": name, "override": null })).into_response()
}
