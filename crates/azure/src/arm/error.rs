//! ARM's error envelope as a typed error, and how to classify it.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::retry::parse_retry_after;

/// One entry of the envelope (`ErrorDetail` in common-types v3; `details` nest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_info: Vec<AdditionalInfo>,
}

/// `ErrorAdditionalInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdditionalInfo {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub info: serde_json::Value,
}

/// An ARM (or Azure ML) error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("ARM HTTP {status}: {code}: {message} (request id {request_id:?})", code = self.error.code, message = self.error.message)]
pub struct ArmError {
    /// HTTP status; 0 when the error came from an operation-status body rather than a response.
    pub status: u16,
    pub error: ErrorDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// `Retry-After` from the response, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Duration>,
}

/// Error codes ARM and RPs use for "does not exist".
const NOT_FOUND_CODES: &[&str] = &[
    "ResourceNotFound",
    "NotFound",
    "ResourceGroupNotFound",
    "UserError.NotFound",
];

impl ArmError {
    /// Parse an error response. Bodies that are not the envelope still give a typed error with
    /// the status and the text, so nothing is lost.
    pub fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: ErrorDetail,
        }
        let error = match serde_json::from_slice::<Envelope>(body) {
            Ok(e) => e.error,
            Err(_) => ErrorDetail {
                code: status
                    .canonical_reason()
                    .unwrap_or("Unknown")
                    .replace(' ', ""),
                message: String::from_utf8_lossy(body).chars().take(2048).collect(),
                ..Default::default()
            },
        };
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Self {
            status: status.as_u16(),
            error,
            request_id: header("x-ms-request-id"),
            correlation_id: header("x-ms-correlation-request-id"),
            retry_after: parse_retry_after(headers, chrono::Utc::now()),
        }
    }

    /// An error reported inside an operation-status body (HTTP 200, `status: Failed`).
    pub fn from_operation(error: ErrorDetail, headers: &HeaderMap) -> Self {
        let mut e = Self::from_response(StatusCode::OK, headers, b"");
        e.status = 0;
        e.error = error;
        e.retry_after = None;
        e
    }

    pub fn code(&self) -> &str {
        &self.error.code
    }

    pub fn is_not_found(&self) -> bool {
        self.status == 404 || NOT_FOUND_CODES.contains(&self.code())
    }

    pub fn is_conflict(&self) -> bool {
        self.status == 409
    }

    /// 429, or an RP asking us to wait for another operation.
    pub fn is_throttled(&self) -> bool {
        self.status == 429 || self.code() == "RetryableErrorDueToAnotherOperation"
    }

    /// `Some(retry_after)` when throttled.
    pub fn throttled_retry_after(&self) -> Option<Option<Duration>> {
        self.is_throttled().then_some(self.retry_after)
    }

    /// Worth trying again later unchanged: throttling, timeouts, server errors.
    pub fn is_retryable(&self) -> bool {
        self.is_throttled() || self.status == 408 || (500..600).contains(&self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-ms-request-id", HeaderValue::from_static("req-1"));
        h.insert(
            "x-ms-correlation-request-id",
            HeaderValue::from_static("corr-1"),
        );
        h
    }

    #[test]
    fn envelope_keeps_code_target_details_and_ids() {
        let body = br#"{"error":{"code":"InvalidParameter","message":"bad size","target":"vmSize",
            "details":[{"code":"Inner","message":"deeper","details":[{"code":"Deepest","message":"x"}]}],
            "additionalInfo":[{"type":"PolicyViolation","info":{"a":1}}]}}"#;
        let e = ArmError::from_response(StatusCode::BAD_REQUEST, &headers(), body);
        assert_eq!(e.status, 400);
        assert_eq!(e.code(), "InvalidParameter");
        assert_eq!(e.error.target.as_deref(), Some("vmSize"));
        assert_eq!(e.error.details[0].details[0].code, "Deepest");
        assert_eq!(e.error.additional_info[0].kind, "PolicyViolation");
        assert_eq!(e.request_id.as_deref(), Some("req-1"));
        assert_eq!(e.correlation_id.as_deref(), Some("corr-1"));
        assert!(!e.is_retryable());
        assert!(!e.is_not_found());
    }

    #[test]
    fn non_envelope_body_still_gives_a_typed_error() {
        let e = ArmError::from_response(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>");
        assert_eq!(e.code(), "BadGateway");
        assert_eq!(e.error.message, "<html>");
        assert!(e.is_retryable());
    }

    #[test]
    fn classification() {
        let nf = ArmError::from_response(
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            br#"{"error":{"code":"ResourceNotFound","message":"gone"}}"#,
        );
        assert!(nf.is_not_found() && !nf.is_retryable() && !nf.is_conflict());
        let conflict = ArmError::from_response(StatusCode::CONFLICT, &HeaderMap::new(), b"{}");
        assert!(conflict.is_conflict());
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("17"));
        let t = ArmError::from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#,
        );
        assert_eq!(
            t.throttled_retry_after(),
            Some(Some(Duration::from_secs(17)))
        );
        assert!(t.is_retryable());
        let other_op = ArmError::from_response(
            StatusCode::CONFLICT,
            &HeaderMap::new(),
            br#"{"error":{"code":"RetryableErrorDueToAnotherOperation","message":"busy"}}"#,
        );
        assert!(other_op.is_throttled() && other_op.is_retryable());
        assert_eq!(nf.throttled_retry_after(), None);
    }

    #[test]
    fn serialises_for_status_storage() {
        let e = ArmError::from_response(
            StatusCode::BAD_REQUEST,
            &headers(),
            br#"{"error":{"code":"C","message":"M"}}"#,
        );
        let back: ArmError = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
