//! ARM's error envelope `{"error":{"code","message","target","details"}}` as an HTTP response.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// One entry of `error.details` (same shape as the top level, without nesting further).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// An ARM error answer: status + envelope (+ optional `WWW-Authenticate` / `Retry-After`).
/// The payload is boxed so `Result<_, ArmError>` stays small.
#[derive(Debug, Clone)]
pub struct ArmError {
    pub status: StatusCode,
    inner: Box<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    code: String,
    message: String,
    target: Option<String>,
    details: Vec<ErrorDetail>,
    www_authenticate: Option<String>,
    retry_after: Option<u64>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            inner: Box::new(Inner {
                code: code.to_owned(),
                message: message.into(),
                target: None,
                details: Vec::new(),
                www_authenticate: None,
                retry_after: None,
            }),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The Resource '{id}' was not found."),
        )
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.inner.target = Some(target.into());
        self
    }

    pub fn with_details(mut self, details: Vec<ErrorDetail>) -> Self {
        self.inner.details = details;
        self
    }

    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.inner.www_authenticate = Some(challenge);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.inner.retry_after = Some(secs);
        self
    }

    pub fn code(&self) -> &str {
        &self.inner.code
    }

    pub fn message(&self) -> &str {
        &self.inner.message
    }

    pub fn challenge(&self) -> Option<&str> {
        self.inner.www_authenticate.as_deref()
    }

    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.inner.code,
            "message": self.inner.message,
            "details": self.inner.details,
        });
        if let Some(target) = &self.inner.target {
            error["target"] = serde_json::Value::String(target.clone());
        }
        serde_json::json!({ "error": error })
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(challenge) = self.challenge().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = self.inner.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
