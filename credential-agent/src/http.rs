//! HTTP: the credentials endpoint with the container credentials wire format
//! every SDK's provider reads, the health endpoints and the metrics endpoint.
//!
//! `GET /v1/credentials` with the raw token as `Authorization`; 200 with
//! `application/json` `{"AccessKeyId","SecretAccessKey","Token","AccountId",
//! "Expiration"}`; errors as `application/json` `{"code","message"}` with the
//! status `Error::status` gives each.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::auth::{presented_token, Auth};
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::host_guard::HostGuard;
use crate::metrics::Metrics;
use crate::response::json_response;
use crate::stored::CachedCredentials;

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Auth>,
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    pub hosts: Arc<HostGuard>,
}

#[derive(Deserialize)]
pub struct RoleQuery {
    role: Option<String>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(contract::agent::CREDENTIALS_PATH, get(credentials))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(State(state): State<AppState>) -> Response {
    state.metrics.request(404);
    error_response(&Error::NotFound)
}

fn error_response(e: &Error) -> Response {
    let body = serde_json::json!({ "code": e.code(), "message": e.to_string() });
    json_response(e.status(), body.to_string())
}

/// The 200 body every SDK's container provider reads.
pub fn credentials_body(c: &CachedCredentials) -> String {
    let mut body = serde_json::Map::new();
    body.insert("AccessKeyId".into(), c.access_key_id().into());
    // The one place the secrets leave their `Secret`: the response body.
    body.insert(
        "SecretAccessKey".into(),
        c.secret_access_key().expose().into(),
    );
    body.insert("Token".into(), c.session_token().expose().into());
    if let Some(a) = c.account_id() {
        body.insert("AccountId".into(), a.into());
    }
    body.insert(
        "Expiration".into(),
        humantime::format_rfc3339_seconds(c.expiration())
            .to_string()
            .into(),
    );
    serde_json::Value::Object(body).to_string()
}

async fn credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    query: std::result::Result<Query<RoleQuery>, QueryRejection>,
) -> Response {
    let result = serve_credentials(&state, &headers, &uri, query).await;
    let resp = match &result {
        Ok(c) => json_response(StatusCode::OK, credentials_body(c)),
        Err(e) => {
            if matches!(
                e,
                Error::TokenRejected(_) | Error::TokenMismatch | Error::MalformedToken(_)
            ) {
                tracing::info!(code = e.code(), error = %e, "refused a token");
            } else {
                tracing::info!(code = e.code(), error = %e, "credential request failed");
            }
            error_response(e)
        }
    };
    state.metrics.request(resp.status().as_u16());
    resp
}

async fn serve_credentials(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    query: std::result::Result<Query<RoleQuery>, QueryRejection>,
) -> Result<CachedCredentials> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if !state.hosts.allows(&host) {
        return Err(Error::HostNotAllowed(host));
    }
    let token = presented_token(headers)?;
    let role = query
        .map(|q| q.0.role)
        .map_err(|_| Error::InvalidRole("the query string cannot be parsed".into()));
    let lookup = state.auth.lookup(token, role, &state.metrics).await?;
    let served = state.cache.get(lookup).await?;
    Ok(served.credentials)
}

/// Readiness: what must hold before the agent can serve.
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

pub fn health_router(ready: ReadyCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready() {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

/// `/metrics`; each scrape first sets the `ready` gauge from `ready`, the
/// check `/readyz` answers with.
pub fn metrics_router(metrics: Arc<Metrics>, ready: ReadyCheck) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            m.ready.set(i64::from(ready()));
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests;
