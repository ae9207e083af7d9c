//! A recording STS proxy in front of moto for `sts:AssumeRole`, which moto
//! answers without looking at `Tags`, `TransitiveTagKeys`, `ExternalId` or
//! any trust policy. The proxy records every AssumeRole call (caller, role,
//! session name, tags, transitive keys, external id) and decides it the way
//! IAM would with the project's evaluator: `sts:AssumeRole` and, when tags
//! are asked for, `sts:TagSession`, each allowed by the role's trust policy
//! for the calling role, else `AccessDenied` naming the action, as STS says
//! it. Allowed calls go on to moto, whose credentials it maps back to the
//! role, so a chained call (`targetRoleArn`) is seen as that role's session.
//!
//! Trust policies come from [`StsRecorder::set_trust`]; the caller of the
//! test's own static keys is [`StsRecorder::new`]'s `base_caller`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use pod_identity::policy::evaluate::{evaluate, Request};
use serde_json::Value;

use crate::harness::free_port;

/// One AssumeRole call as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleCall {
    /// The role whose session made the call (or the base caller).
    pub caller: String,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub transitive: Vec<String>,
    pub duration_seconds: Option<i64>,
    /// `None`: allowed and sent to moto; else the refused action.
    pub denied: Option<String>,
}

#[derive(Default)]
struct State {
    upstream: String,
    base_caller: String,
    trust: Mutex<HashMap<String, Value>>,
    /// Access key ids moto issued -> the role they are a session of.
    sessions: Mutex<HashMap<String, String>>,
    calls: Mutex<Vec<AssumeRoleCall>>,
    client: reqwest::Client,
}

pub struct StsRecorder {
    pub url: String,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StsRecorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

/// The access key id of a SigV4 `Authorization` header.
fn access_key(auth: &str) -> Option<&str> {
    auth.split("Credential=").nth(1)?.split('/').next()
}

fn denied(caller: &str, action: &str, role: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let xml = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: {caller} is not authorized to perform: {action} on resource: {role}</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    );
    (
        http::StatusCode::FORBIDDEN,
        [("content-type", "text/xml")],
        xml,
    )
        .into_response()
}

async fn handle(
    axum::extract::State(s): axum::extract::State<Arc<State>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let f = form(&String::from_utf8_lossy(&body));
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let caller = access_key(auth)
        .and_then(|k| s.sessions.lock().unwrap().get(k).cloned())
        .unwrap_or_else(|| s.base_caller.clone());
    let assume = f.get("Action").map(String::as_str) == Some("AssumeRole");
    let mut call = None;
    if assume {
        let mut tags = BTreeMap::new();
        for i in 1.. {
            let (Some(k), Some(v)) = (
                f.get(&format!("Tags.member.{i}.Key")),
                f.get(&format!("Tags.member.{i}.Value")),
            ) else {
                break;
            };
            tags.insert(k.clone(), v.clone());
        }
        let transitive = (1..)
            .map_while(|i| f.get(&format!("TransitiveTagKeys.member.{i}")).cloned())
            .collect();
        let role = f.get("RoleArn").cloned().unwrap_or_default();
        let mut c = AssumeRoleCall {
            caller: caller.clone(),
            role_arn: role.clone(),
            session_name: f.get("RoleSessionName").cloned().unwrap_or_default(),
            external_id: f.get("ExternalId").cloned(),
            tags,
            transitive,
            duration_seconds: f.get("DurationSeconds").and_then(|d| d.parse().ok()),
            denied: None,
        };
        let trust = s.trust.lock().unwrap().get(&role).cloned();
        let mut actions = vec!["sts:AssumeRole"];
        if !c.tags.is_empty() {
            actions.push("sts:TagSession");
        }
        for action in actions {
            let mut r = Request::with_session_tags(&caller, action, &c.tags);
            if let Some(id) = &c.external_id {
                r.context.insert("sts:ExternalId".into(), id.clone());
            }
            let allowed = trust.as_ref().is_some_and(|t| evaluate(t, &r).is_allowed());
            if !allowed {
                c.denied = Some(action.to_string());
                s.calls.lock().unwrap().push(c);
                return denied(&caller, action, &role);
            }
        }
        call = Some(c);
    }
    let Ok((status, _, bytes)) = crate::agent::forward(&s.client, &s.upstream, &parts, body).await
    else {
        return (http::StatusCode::BAD_GATEWAY, "moto unreachable").into_response();
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if let Some(c) = call {
        if status.is_success() {
            if let Some(key) = text
                .split("<AccessKeyId>")
                .nth(1)
                .and_then(|t| t.split("</AccessKeyId>").next())
            {
                s.sessions
                    .lock()
                    .unwrap()
                    .insert(key.to_string(), c.role_arn.clone());
            }
        }
        s.calls.lock().unwrap().push(c);
    }
    (status, [("content-type", "text/xml")], text).into_response()
}

impl StsRecorder {
    /// Listens on loopback in front of `upstream` (moto); requests signed
    /// with keys moto did not issue through it are `base_caller`'s.
    pub async fn new(upstream: &str, base_caller: &str) -> Result<StsRecorder> {
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            base_caller: base_caller.to_string(),
            client: reqwest::Client::new(),
            ..Default::default()
        });
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StsRecorder {
            url: format!("http://127.0.0.1:{port}"),
            state,
            server,
        })
    }

    /// The trust policy IAM would evaluate for `role_arn`.
    pub fn set_trust(&self, role_arn: &str, policy: Value) {
        self.state
            .trust
            .lock()
            .unwrap()
            .insert(role_arn.to_string(), policy);
    }

    /// Every AssumeRole call so far, in order.
    pub fn calls(&self) -> Vec<AssumeRoleCall> {
        self.state.calls.lock().unwrap().clone()
    }
}
