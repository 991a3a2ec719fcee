//! Rules Azure ML applies to a compute PUT beyond the schema: the compute lives in its
//! workspace's region, and an attached VM's administrator key is RSA in the documented formats.

use serde_json::Value;

use crate::{
    arm::{Req, location_of},
    arm_error::ArmError,
    ids,
    state::State,
};

fn normalize(location: &str) -> String {
    location.replace(' ', "").to_ascii_lowercase()
}

/// Checks a `workspaces/computes` PUT body (before secrets are split off).
pub fn check_compute_put(req: &Req<'_>, st: &State, body: &Value) -> Result<(), ArmError> {
    if let Some(location) = body["location"].as_str()
        && let Some(workspace) = ids::parent_id(&req.path)
        && st.get(&workspace).is_some()
    {
        let expected = location_of(st, &workspace);
        if normalize(location) != expected {
            return Err(ArmError::bad_request(
                "UserError",
                format!(
                    "The compute location '{location}' does not match the location of workspace '{}' ('{expected}'); a compute must be created in its workspace's region.",
                    ids::name_of(&workspace)
                ),
            )
            .with_target("location"));
        }
    }
    let account = &body["properties"]["properties"]["administratorAccount"];
    if body["properties"]["computeType"].as_str() == Some("VirtualMachine") && account.is_object() {
        crate::ssh_keys::check_ml_admin_account(account)?;
    }
    Ok(())
}

/// `Workspaces_Get` (`GET .../workspaces/{ws}?api-version=2025-12-01`), served from the
/// configured workspaces. `workspaceRP.json` is not among the saved specs, so this one read is
/// routed before the spec check; it returns what ARM returns that matters here (`location`,
/// `properties.provisioningState`, ...). `None`: not this route.
pub fn workspace_get(
    sh: &crate::shared::Shared,
    method: &axum::http::Method,
    arm: &ids::ArmPath,
    path: &str,
    query: &std::collections::HashMap<String, String>,
) -> Option<Result<axum::response::Response, ArmError>> {
    let is_workspace = *method == axum::http::Method::GET
        && arm
            .namespace
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(crate::arm::ML_NAMESPACE))
        && arm.segments.len() == 2
        && arm.segments[0].eq_ignore_ascii_case("workspaces");
    if !is_workspace {
        return None;
    }
    Some((|| {
        match crate::arm::query_get(query, "api-version") {
            Some(crate::arm::WORKSPACE_API_VERSION) => {}
            Some(v) => {
                return Err(ArmError::bad_request(
                    "NoRegisteredProviderFound",
                    format!(
                        "No registered resource provider found for API version '{v}' for type 'workspaces'. The supported api-versions are '{}'.",
                        crate::arm::WORKSPACE_API_VERSION
                    ),
                ));
            }
            None => {
                return Err(ArmError::bad_request(
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                ));
            }
        }
        let mut st = sh.state();
        st.advance(std::time::Instant::now());
        let res = st.get(path).ok_or_else(|| ArmError::not_found(path))?;
        Ok(crate::arm::json_response(
            axum::http::StatusCode::OK,
            &res.body,
        ))
    })())
}
