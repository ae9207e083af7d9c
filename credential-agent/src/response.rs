//! The one way credentials and their errors leave over HTTP: a JSON body
//! with `Cache-Control: no-store` (the container credentials answers and
//! the broker's EKS Auth answers alike).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A JSON body with `Cache-Control: no-store` (credentials and their errors).
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
