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
