//! Which Azure failures end a reconcile for good (until the spec or a Secret changes) and which
//! are retried, with the reason a user reads in the condition.
//!
//! ARM's error code decides first, the HTTP status second (the way Azure Service Operator's
//! classifier does): `OperationNotAllowed` answered with 409 is a quota problem, not a
//! conflict to wait out, and `AnotherOperationInProgress` answered with 409 is.

use std::{error::Error as StdError, time::Duration};

use edgetrain_azure::{Error as AzureError, arm::ArmError};

use super::status::Reason;

/// What a failure means for the next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Worth trying again unchanged (throttling, 5xx, conflicts, network faults); not before
    /// `retry_after` when the server said so.
    Transient {
        reason: Reason,
        retry_after: Option<Duration>,
    },
    /// Trying again unchanged gives the same answer: wait for a change of the spec or of a
    /// referenced Secret.
    Permanent { reason: Reason },
}

pub const CREDENTIALS_REJECTED: Reason = Reason::new("CredentialsRejected");
pub const AUTHORIZATION_FAILED: Reason = Reason::new("AuthorizationFailed");
pub const ENDPOINT_UNREACHABLE: Reason = Reason::new("EndpointUnreachable");
pub const TLS_ERROR: Reason = Reason::new("TLSError");
pub const THROTTLED: Reason = Reason::new("AzureThrottled");
pub const SERVER_ERROR: Reason = Reason::new("AzureServerError");
pub const CONFLICT: Reason = Reason::new("AzureConflict");
pub const UNEXPECTED_RESPONSE: Reason = Reason::new("UnexpectedResponse");
pub const INVALID_ENDPOINT: Reason = Reason::new("InvalidEndpoint");
pub const UNTRUSTED_ENDPOINT: Reason = Reason::new("UntrustedEndpoint");

/// Codes that are retried whatever their status.
const RETRY_CODES: &[&str] = &[
    "AnotherOperationInProgress",
    "RetryableErrorDueToAnotherOperation",
    "OperationPreempted",
    "TooManyRequests",
    "SubscriptionRequestsThrottled",
    "ResourceCollectionRequestsThrottled",
    "InternalServerError",
    "InternalOperationError",
    "ServiceUnavailable",
    "GatewayTimeout",
    // The token expired between issue and use; the next attempt fetches a new one.
    "ExpiredAuthenticationToken",
];

/// The token was refused: a Secret change is needed.
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAuthenticationToken",
    "InvalidAuthenticationTokenAudience",
    "InvalidAuthenticationTokenTenant",
    "AuthenticationFailed",
];

/// The principal lacks a role assignment.
const AUTHORIZATION_CODES: &[&str] = &[
    "AuthorizationFailed",
    "LinkedAuthorizationFailed",
    "LinkedAccessCheckFailed",
];

/// Permanent whatever their status (some come with 409 or 5xx-looking wrappers).
const PERMANENT_CODES: &[&str] = &[
    "InvalidParameter",
    "InvalidRequestContent",
    "InvalidRequestFormat",
    "BadRequest",
    "QuotaExceeded",
    "OperationNotAllowed",
    "RequestDisallowedByPolicy",
    "SkuNotAvailable",
    "PropertyChangeNotAllowed",
    "MissingSubscriptionRegistration",
    "SubscriptionNotFound",
    "ResourceGroupNotFound",
    "ParentResourceNotFound",
    "LocationNotAvailableForResourceType",
    "NoRegisteredProviderFound",
    "InvalidApiVersionParameter",
    "ReadOnlyDisabledSubscription",
    "DisallowedOperation",
];

/// Token endpoint (OAuth 2.0) error codes that mean the principal itself was refused.
const OAUTH_REJECTED: &[&str] = &[
    "invalid_client",
    "unauthorized_client",
    "invalid_grant",
    "invalid_resource",
];

fn code_in(code: &str, list: &[&str]) -> bool {
    list.iter().any(|c| c.eq_ignore_ascii_case(code))
}

fn permanent(reason: Reason) -> Fault {
    Fault::Permanent { reason }
}

fn transient(reason: Reason, retry_after: Option<Duration>) -> Fault {
    Fault::Transient {
        reason,
        retry_after,
    }
}

/// Classifies an ARM or Azure ML error envelope.
pub fn classify_arm(e: &ArmError) -> Fault {
    let code = e.code();
    if code_in(code, RETRY_CODES) {
        let reason = if e.status == 429 || code.contains("Throttled") || code == "TooManyRequests" {
            THROTTLED
        } else if code_in(
            code,
            &[
                "AnotherOperationInProgress",
                "RetryableErrorDueToAnotherOperation",
                "OperationPreempted",
            ],
        ) {
            CONFLICT
        } else {
            SERVER_ERROR
        };
        return transient(reason, e.retry_after);
    }
    if code_in(code, CREDENTIAL_CODES) {
        return permanent(CREDENTIALS_REJECTED);
    }
    if code_in(code, AUTHORIZATION_CODES) {
        return permanent(AUTHORIZATION_FAILED);
    }
    if code_in(code, PERMANENT_CODES) {
        return permanent(Reason::from_code(code, "AzureRequestRejected"));
    }
    match e.status {
        401 => permanent(CREDENTIALS_REJECTED),
        403 => permanent(AUTHORIZATION_FAILED),
        429 => transient(THROTTLED, e.retry_after),
        408 => transient(SERVER_ERROR, e.retry_after),
        409 => transient(CONFLICT, e.retry_after),
        s if s >= 500 => transient(SERVER_ERROR, e.retry_after),
        s if s >= 400 => permanent(Reason::from_code(code, "AzureRequestRejected")),
        // An operation that ended Failed (status 0) with a code not listed above: the
        // operation itself may succeed when started again.
        _ => transient(Reason::from_code(code, "AzureOperationFailed"), None),
    }
}

/// Classifies any failure of an Azure client.
pub fn classify(e: &AzureError) -> Fault {
    match e {
        AzureError::Arm(a) => classify_arm(a),
        AzureError::Token { status, code, .. } => {
            if code_in(code, OAUTH_REJECTED) || *status == 401 || *status == 403 {
                permanent(CREDENTIALS_REJECTED)
            } else if *status == 429 || *status == 408 || *status >= 500 {
                transient(SERVER_ERROR, None)
            } else {
                // invalid_request and friends: a tenant that does not exist, a malformed id.
                permanent(CREDENTIALS_REJECTED)
            }
        }
        AzureError::Credential { source, .. } => match source.downcast_ref::<AzureError>() {
            Some(inner) => classify(inner),
            None => transient(SERVER_ERROR, None),
        },
        AzureError::Transport { source, .. } => transport(source),
        AzureError::Blob { status, code, .. } => match *status {
            401 | 403 => permanent(CREDENTIALS_REJECTED),
            408 | 429 => transient(THROTTLED, None),
            s if s >= 500 => transient(SERVER_ERROR, None),
            _ => permanent(Reason::from_code(code, "BlobRequestRejected")),
        },
        AzureError::Decode { .. } => transient(UNEXPECTED_RESPONSE, None),
        AzureError::Url { .. } | AzureError::InvalidInput(_) => permanent(INVALID_ENDPOINT),
        AzureError::ForeignPollUrl { .. } => permanent(INVALID_ENDPOINT),
        // Plain http off loopback, or outside the operator's allow-list: the spec must change.
        AzureError::UntrustedEndpoint { .. } => permanent(UNTRUSTED_ENDPOINT),
        AzureError::ClientSetup(_) | AzureError::Io { .. } => {
            transient(Reason::new("ClientSetupFailed"), None)
        }
    }
}

/// A TLS failure surfaces as io::Errors wrapping each other (the connector's `Other`
/// around the TLS stream's `InvalidData`) around rustls' error; `io::Error::source` skips the
/// wrapped error, so this looks inside with `get_ref`.
fn is_tls(err: &(dyn StdError + 'static)) -> bool {
    if err.is::<rustls::Error>() {
        return true;
    }
    match err.downcast_ref::<std::io::Error>() {
        Some(io) => {
            io.kind() == std::io::ErrorKind::InvalidData
                || io.get_ref().is_some_and(|inner| is_tls(inner))
        }
        None => false,
    }
}

/// A request that got no HTTP answer: TLS trouble, or nobody (answering) there.
fn transport(e: &reqwest::Error) -> Fault {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if is_tls(err) {
            return transient(TLS_ERROR, None);
        }
        cur = err.source();
    }
    transient(ENDPOINT_UNREACHABLE, None)
}

/// `e` and its sources on one line, each cause once.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

/// What a user should read about an Azure failure: the Azure code and message, or the network
/// cause. Request ids are left out, so the message (and the condition) does not change on every
/// retry of the same failure.
pub fn describe(e: &AzureError) -> String {
    match e {
        AzureError::Arm(a) if a.status == 0 => format!("{}: {}", a.code(), a.error.message),
        AzureError::Arm(a) => format!("HTTP {}: {}: {}", a.status, a.code(), a.error.message),
        AzureError::Credential { scope, source } => match source.downcast_ref::<AzureError>() {
            Some(inner) => describe(inner),
            None => format!("could not get a token for {scope}: {}", chain(source)),
        },
        other => chain(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, StatusCode};

    fn arm(status: u16, code: &str) -> ArmError {
        ArmError::from_response(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#).as_bytes(),
        )
    }

    fn is_permanent(f: &Fault, reason: &str) -> bool {
        matches!(f, Fault::Permanent { reason: r } if r == &reason)
    }

    fn is_transient(f: &Fault, reason: &str) -> bool {
        matches!(f, Fault::Transient { reason: r, .. } if r == &reason)
    }

    #[test]
    fn arm_code_decides_before_status() {
        let table: &[(u16, &str, bool, &str)] = &[
            // (status, code, permanent, reason)
            (400, "InvalidParameter", true, "InvalidParameter"),
            (409, "OperationNotAllowed", true, "OperationNotAllowed"),
            (409, "QuotaExceeded", true, "QuotaExceeded"),
            (
                403,
                "RequestDisallowedByPolicy",
                true,
                "RequestDisallowedByPolicy",
            ),
            (409, "SkuNotAvailable", true, "SkuNotAvailable"),
            (403, "AuthorizationFailed", true, "AuthorizationFailed"),
            (
                403,
                "LinkedAuthorizationFailed",
                true,
                "AuthorizationFailed",
            ),
            (
                401,
                "InvalidAuthenticationToken",
                true,
                "CredentialsRejected",
            ),
            (401, "SomethingNew", true, "CredentialsRejected"),
            (400, "SomethingNew", true, "SomethingNew"),
            (404, "ResourceGroupNotFound", true, "ResourceGroupNotFound"),
            (409, "AnotherOperationInProgress", false, "AzureConflict"),
            (409, "Conflict", false, "AzureConflict"),
            (429, "TooManyRequests", false, "AzureThrottled"),
            (
                429,
                "SubscriptionRequestsThrottled",
                false,
                "AzureThrottled",
            ),
            (500, "InternalServerError", false, "AzureServerError"),
            (503, "Whatever", false, "AzureServerError"),
            (401, "ExpiredAuthenticationToken", false, "AzureServerError"),
        ];
        for (status, code, perm, reason) in table {
            let f = classify_arm(&arm(*status, code));
            let ok = if *perm {
                is_permanent(&f, reason)
            } else {
                is_transient(&f, reason)
            };
            assert!(ok, "{status} {code}: {f:?}");
        }
    }

    #[test]
    fn token_endpoint_refusals_are_rejected_credentials() {
        for (status, code) in [
            (401, "invalid_client"),
            (400, "unauthorized_client"),
            (400, "invalid_request"),
        ] {
            let e = AzureError::Token {
                token_url: "https://login/t/oauth2/token".into(),
                status,
                code: code.into(),
                description: "AADSTS".into(),
            };
            assert!(is_permanent(&classify(&e), "CredentialsRejected"), "{code}");
        }
        let busy = AzureError::Token {
            token_url: "https://login/t/oauth2/token".into(),
            status: 503,
            code: "temporarily_unavailable".into(),
            description: String::new(),
        };
        assert!(is_transient(&classify(&busy), "AzureServerError"));
    }

    #[test]
    fn a_refusal_inside_a_credential_error_is_found() {
        let inner = AzureError::Token {
            token_url: "https://login/t/oauth2/token".into(),
            status: 401,
            code: "invalid_client".into(),
            description: "AADSTS7000215: Invalid client secret".into(),
        };
        let e = AzureError::Credential {
            scope: "https://management.azure.com/.default".into(),
            source: azure_core::Error::with_error(
                azure_core::error::ErrorKind::Credential,
                inner,
                "token request failed",
            ),
        };
        assert!(is_permanent(&classify(&e), "CredentialsRejected"));
        assert!(describe(&e).contains("AADSTS7000215"), "{}", describe(&e));
    }

    #[test]
    fn description_names_code_and_message_without_request_ids() {
        let mut a = arm(409, "QuotaExceeded");
        a.request_id = Some("req-123".into());
        let text = describe(&AzureError::Arm(Box::new(a)));
        assert!(text.contains("QuotaExceeded: m"), "{text}");
        assert!(!text.contains("req-123"), "{text}");
    }
}
