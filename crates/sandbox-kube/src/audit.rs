//! A record of the writes the server answered, in the order it committed them, and who sent
//! each: the bearer token of the request names the user (there is no authentication, so a
//! kubeconfig from [`crate::SandboxKube::kubeconfig_as`] is how a client says who it is).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use http::{HeaderMap, Method, header};

/// One write request (POST, PUT, PATCH or DELETE) and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The bearer token sent, or `system:anonymous` without one.
    pub user: String,
    pub method: String,
    pub path: String,
    /// The HTTP status the server answered.
    pub code: u16,
}

/// How many writes are kept (the oldest go first), so a long demo does not grow without end.
const KEEP: usize = 100_000;

#[derive(Debug, Clone, Default)]
pub struct AuditLog(Arc<Mutex<VecDeque<AuditEvent>>>);

impl AuditLog {
    /// Whether requests with `method` are recorded.
    pub fn records(method: &Method) -> bool {
        !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
    }

    /// Held around a write's handling, so the log's order is the commit order.
    pub fn lock(&self) -> MutexGuard<'_, VecDeque<AuditEvent>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn events(&self) -> Vec<AuditEvent> {
        self.lock().iter().cloned().collect()
    }
}

/// Appends to a locked log.
pub fn push(log: &mut VecDeque<AuditEvent>, event: AuditEvent) {
    if log.len() == KEEP {
        log.pop_front();
    }
    log.push_back(event);
}

/// The user a request claims to be.
pub fn user(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map_or_else(|| "system:anonymous".to_string(), |t| t.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_the_bearer_token() {
        let mut h = HeaderMap::new();
        assert_eq!(user(&h), "system:anonymous");
        h.insert(header::AUTHORIZATION, "Bearer replica-a".parse().unwrap());
        assert_eq!(user(&h), "replica-a");
        assert!(AuditLog::records(&Method::PATCH) && !AuditLog::records(&Method::GET));
        let log = AuditLog::default();
        let e = AuditEvent {
            user: "u".into(),
            method: "PUT".into(),
            path: "/p".into(),
            code: 200,
        };
        push(&mut log.lock(), e.clone());
        assert_eq!(log.events(), vec![e]);
    }
}
