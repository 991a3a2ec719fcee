//! Microsoft.Compute virtual machines: size checks, NIC references, power state, instance view.

use axum::{
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    arm::{Prepared, Req, start_operation},
    arm_error::ArmError,
    ids,
    state::{Effect, PowerState, Resource, State, set_provisioning},
};

/// The stamp offers only `allowed_vm_sizes` (when set).
fn check_size(req: &Req<'_>, size: Option<&str>, location: &str) -> Result<(), ArmError> {
    let allowed = &req.sh.config.allowed_vm_sizes;
    if let Some(size) = size
        && !allowed.is_empty()
        && !allowed.iter().any(|a| a.eq_ignore_ascii_case(size))
    {
        return Err(ArmError::conflict(
            "SkuNotAvailable",
            format!(
                "The requested size for resource '{}' is currently not available in location '{location}'. Please try another size or deploy to a different location or zones. Available sizes: {}.",
                req.path,
                allowed.join(", ")
            ),
        )
        .with_target("properties.hardwareProfile.vmSize"));
    }
    Ok(())
}

/// ARM refuses to change `osProfile` of an existing VM (409 `PropertyChangeNotAllowed`);
/// members the request leaves out are kept. `customData` is compared with what was sent at
/// creation (kept with the VM's secrets, since GET never returns it).
fn check_os_profile_unchanged(existing: &Resource, new_os: &Value) -> Result<(), ArmError> {
    let Some(new_os) = new_os.as_object() else {
        return Ok(());
    };
    let old_os = &existing.body["properties"]["osProfile"];
    let refuse = |property: String| {
        ArmError::conflict(
            "PropertyChangeNotAllowed",
            format!("Changing property '{property}' is not allowed."),
        )
        .with_target(property)
    };
    for (key, value) in new_os {
        match key.as_str() {
            "adminPassword" => {}
            "customData" => {
                let old = existing
                    .secrets
                    .as_ref()
                    .and_then(|s| s.get("customData"))
                    .unwrap_or(&Value::Null);
                if old != value {
                    return Err(refuse("customData".into()));
                }
            }
            "linuxConfiguration" => {
                for (sub, v) in value.as_object().into_iter().flatten() {
                    if old_os[key][sub] != *v {
                        let path = if sub == "ssh" {
                            "linuxConfiguration.ssh.publicKeys".to_string()
                        } else {
                            format!("linuxConfiguration.{sub}")
                        };
                        return Err(refuse(path));
                    }
                }
            }
            _ if old_os[key] != *value => return Err(refuse(key.clone())),
            _ => {}
        }
    }
    Ok(())
}

/// `VirtualMachines_Update` (PATCH): the same rules as a PUT on the merged result.
pub fn prepare_vm_patch(req: &Req<'_>, existing: &Resource, patch: &Value) -> Result<(), ArmError> {
    let location = existing.body["location"].as_str().unwrap_or("local");
    check_size(
        req,
        patch["properties"]["hardwareProfile"]["vmSize"].as_str(),
        location,
    )?;
    check_os_profile_unchanged(existing, &patch["properties"]["osProfile"])?;
    crate::ssh_keys::check_vm_public_keys(patch)
}

pub fn prepare_vm(
    req: &Req<'_>,
    st: &State,
    existing: Option<&Resource>,
    body: &mut Value,
) -> Result<Prepared, ArmError> {
    let size = body["properties"]["hardwareProfile"]["vmSize"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            existing.and_then(|e| {
                e.body["properties"]["hardwareProfile"]["vmSize"]
                    .as_str()
                    .map(str::to_owned)
            })
        });
    check_size(
        req,
        size.as_deref(),
        body["location"].as_str().unwrap_or("local"),
    )?;
    crate::ssh_keys::check_vm_public_keys(body)?;
    if let Some(existing) = existing {
        check_os_profile_unchanged(existing, &body["properties"]["osProfile"])?;
    }
    if let Some(nics) = body["properties"]["networkProfile"]["networkInterfaces"].as_array() {
        for (i, nic) in nics.iter().enumerate() {
            let Some(nic_id) = nic["id"].as_str() else {
                continue;
            };
            let Some(stored) = st.get(nic_id) else {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!("Network interface '{nic_id}' referenced by the virtual machine was not found."),
                )
                .with_target(format!("properties.networkProfile.networkInterfaces[{i}].id")));
            };
            let owner = stored.body["properties"]["virtualMachine"]["id"].as_str();
            if owner.is_some_and(|o| ids::key(o) != ids::key(&req.path)) {
                return Err(ArmError::bad_request(
                    "NicInUse",
                    format!("Network interface '{nic_id}' is used by another virtual machine."),
                ));
            }
        }
    }
    // Server-owned values survive updates; secrets never come back on GET.
    let vm_id = existing
        .and_then(|e| e.body["properties"]["vmId"].as_str().map(str::to_owned))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    body["properties"]["vmId"] = Value::String(vm_id);
    let mut custom_data = None;
    if let Some(os) = body["properties"]["osProfile"].as_object_mut() {
        os.remove("adminPassword");
        custom_data = os.remove("customData");
    }
    if let Some(props) = body["properties"].as_object_mut() {
        props.remove("instanceView");
    }
    // An update keeps the osProfile it was created with (checked above).
    if let Some(existing) = existing
        && body["properties"]["osProfile"].is_null()
    {
        body["properties"]["osProfile"] = existing.body["properties"]["osProfile"].clone();
    }
    Ok(Prepared {
        initial_power: Some(PowerState::Starting),
        secrets: existing
            .is_none()
            .then(|| serde_json::json!({ "customData": custom_data })),
        ..Prepared::default()
    })
}

/// Mark the VM's NICs as attached.
pub fn after_put(st: &mut State, ty: &str, id: &str) {
    if ty != "microsoft.compute/virtualmachines" {
        return;
    }
    let Some(vm) = st.get(id).cloned() else {
        return;
    };
    let nic_ids: Vec<String> = vm.body["properties"]["networkProfile"]["networkInterfaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for nic_id in nic_ids {
        if let Some(nic) = st.get_mut(&nic_id) {
            nic.body["properties"]["virtualMachine"] = json!({ "id": vm.id });
        }
    }
}

/// `GET .../instanceView` and `$expand=instanceView`.
pub fn instance_view(res: &Resource) -> Value {
    let provisioning = res.body["properties"]["provisioningState"]
        .as_str()
        .unwrap_or("Succeeded");
    let mut statuses = vec![json!({
        "code": format!("ProvisioningState/{}", provisioning.to_ascii_lowercase()),
        "level": if provisioning == "Failed" { "Error" } else { "Info" },
        "displayStatus": format!("Provisioning {}", provisioning.to_ascii_lowercase()),
        "time": chrono::Utc::now().to_rfc3339(),
    })];
    if let Some(power) = res.power {
        statuses.push(json!({
            "code": format!("PowerState/{}", power.code()),
            "level": "Info",
            "displayStatus": power.display(),
        }));
    }
    json!({
        "computerName": res.body["properties"]["osProfile"]["computerName"],
        "osName": "ubuntu",
        "statuses": statuses,
    })
}

/// start / powerOff / deallocate / restart.
pub fn action(
    req: &Req<'_>,
    st: &mut State,
    vm_id: &str,
    action: &str,
) -> Result<Response, ArmError> {
    let vm = st
        .get(vm_id)
        .cloned()
        .ok_or_else(|| ArmError::not_found(vm_id))?;
    let current = vm.power.unwrap_or(PowerState::Running);
    let (transitional, target) = match action {
        "start" => (PowerState::Starting, PowerState::Running),
        "poweroff" => (PowerState::Stopping, PowerState::Stopped),
        "deallocate" => (PowerState::Deallocating, PowerState::Deallocated),
        "restart" => {
            if current != PowerState::Running {
                return Err(ArmError::conflict(
                    "OperationNotAllowed",
                    format!(
                        "Operation 'restart' is not allowed on VM '{}' since the VM is {}.",
                        ids::name_of(vm_id),
                        current.code()
                    ),
                ));
            }
            (PowerState::Starting, PowerState::Running)
        }
        _ => {
            return Err(ArmError::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                format!("The simulator does not implement the VM action '{action}'."),
            ));
        }
    };
    if let Some(res) = st.get_mut(vm_id) {
        res.power = Some(transitional);
        set_provisioning(&mut res.body, "Updating");
    }
    let headers: HeaderMap = start_operation(req, st, vm_id, Effect::Power(target), false);
    let mut resp = StatusCode::ACCEPTED.into_response();
    resp.headers_mut().extend(headers);
    Ok(resp)
}
