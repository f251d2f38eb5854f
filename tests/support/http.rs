//! Requests through a world's router, and the replies decoded.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::World;

/// A response, decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }
}

impl World {
    /// Sends a request with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        match body {
            Some(b) => {
                self.raw(
                    method,
                    path,
                    token,
                    Some("application/json"),
                    b.to_string().into_bytes(),
                )
                .await
            }
            None => self.raw(method, path, token, None, Vec::new()).await,
        }
    }

    /// Sends a request with an optional JSON body, as if from a client at `peer` (the local
    /// server's connection info).
    pub async fn call_from(
        &self,
        peer: std::net::SocketAddr,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let req = request(
            method,
            path,
            token,
            body.as_ref().map(|_| "application/json"),
        )
        .extension(axum::extract::ConnectInfo(peer));
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        respond(&self.app, req.body(Body::from(body)).unwrap()).await
    }

    /// Sends a request with any body and content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        send(&self.app, method, path, token, content_type, body).await
    }

    /// A GET whose body may break part-way: the status, the headers, and the body or the
    /// error that cut it short.
    pub async fn get_streamed(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, HeaderMap, Result<Vec<u8>, String>) {
        let mut req = Request::builder().method(Method::GET).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = self
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .map_err(|e| e.to_string());
        (status, headers, body)
    }
}

/// Sends one request through a router.
pub async fn send(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let req = request(method, path, token, content_type);
    respond(app, req.body(Body::from(body)).unwrap()).await
}

fn request(
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
) -> axum::http::request::Builder {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    req
}

async fn respond(app: &Router, req: Request<Body>) -> Reply {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Reply {
        status,
        body,
        headers,
    }
}
