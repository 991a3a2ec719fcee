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
    fill_os_disk(req, existing, body);
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

/// What the service fills into `storageProfile.osDisk`: the OS type, the disk's name and the
/// id of the managed disk it created (kept across updates).
fn fill_os_disk(req: &Req<'_>, existing: Option<&Resource>, body: &mut Value) {
    let Some(disk) = body
        .pointer_mut("/properties/storageProfile/osDisk")
        .filter(|d| d.is_object())
    else {
        return;
    };
    let previous = existing.and_then(|e| e.body.pointer("/properties/storageProfile/osDisk"));
    let kept = |field: &str| previous.and_then(|p| p.get(field)).cloned();
    if disk["osType"].is_null() {
        disk["osType"] = kept("osType").unwrap_or_else(|| json!("Linux"));
    }
    if disk["name"].is_null() {
        disk["name"] = kept("name").unwrap_or_else(|| {
            let vm = ids::name_of(&req.path);
            Value::String(format!("{vm}_OsDisk_1_{}", uuid::Uuid::new_v4().simple()))
        });
    }
    let name = disk["name"].as_str().unwrap_or_default().to_owned();
    let rg = req.arm.resource_group.clone().unwrap_or_default();
    if !disk["managedDisk"].is_object() {
        disk["managedDisk"] = json!({});
    }
    // Azure spells the resource group of generated ids in upper case.
    disk["managedDisk"]["id"] = Value::String(format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/disks/{name}",
        req.arm.subscription,
        rg.to_ascii_uppercase()
    ));
    if disk["managedDisk"]["storageAccountType"].is_null() {
        disk["managedDisk"]["storageAccountType"] = kept("managedDisk")
            .and_then(|m| m.get("storageAccountType").cloned())
            .unwrap_or_else(|| json!("Standard_LRS"));
    }
}

/// Published shapes of common sizes: (name, cores, memory MB, resource disk MB, data disks).
const SIZES: &[(&str, u32, u32, u32, u32)] = &[
    ("Standard_A1_v2", 1, 2048, 10240, 2),
    ("Standard_A2_v2", 2, 4096, 20480, 4),
    ("Standard_A4_v2", 4, 8192, 40960, 8),
    ("Standard_A8_v2", 8, 16384, 81920, 16),
    ("Standard_D1_v2", 1, 3584, 51200, 4),
    ("Standard_D2_v2", 2, 7168, 102400, 8),
    ("Standard_D3_v2", 4, 14336, 204800, 16),
    ("Standard_D4_v2", 8, 28672, 409600, 32),
    ("Standard_DS1_v2", 1, 3584, 7168, 4),
    ("Standard_DS2_v2", 2, 7168, 14336, 8),
    ("Standard_DS3_v2", 4, 14336, 28672, 16),
    ("Standard_DS4_v2", 8, 28672, 57344, 32),
    ("Standard_F2s_v2", 2, 4096, 16384, 4),
    ("Standard_F4s_v2", 4, 8192, 32768, 8),
];

/// `GET .../locations/{loc}/vmSizes` and `GET .../virtualMachines/{vm}/vmSizes`: the sizes
/// the stamp places (`allowed_vm_sizes`, or the table above when that is empty). `None` when
/// the list is not one of these.
pub fn vm_sizes(
    req: &Req<'_>,
    st: &State,
    parent: &str,
    child_type: &str,
) -> Option<Result<Vec<Value>, ArmError>> {
    if !req.namespace().eq_ignore_ascii_case("Microsoft.Compute")
        || !child_type.eq_ignore_ascii_case("vmSizes")
    {
        return None;
    }
    let of_vm = ids::ArmPath::parse(parent).is_some_and(|p| {
        p.resource_type()
            .eq_ignore_ascii_case("Microsoft.Compute/virtualMachines")
    });
    if of_vm && st.get(parent).is_none() {
        return Some(Err(ArmError::not_found(parent)));
    }
    let allowed = &req.sh.config.allowed_vm_sizes;
    let names: Vec<&str> = if allowed.is_empty() {
        SIZES.iter().map(|s| s.0).collect()
    } else {
        allowed.iter().map(String::as_str).collect()
    };
    Some(Ok(names
        .into_iter()
        .map(
            |name| match SIZES.iter().find(|s| s.0.eq_ignore_ascii_case(name)) {
                Some((name, cores, memory, resource_disk, disks)) => json!({
                    "name": name,
                    "numberOfCores": cores,
                    "osDiskSizeInMB": 1_047_552,
                    "resourceDiskSizeInMB": resource_disk,
                    "memoryInMB": memory,
                    "maxDataDiskCount": disks,
                }),
                // A configured size without a known shape: its name is all we can say.
                None => json!({ "name": name }),
            },
        )
        .collect()))
}

/// Mark the VM's NICs as attached, and create its managed OS disk (an implicit
/// `osDisk.createOption: FromImage` disk is a `Microsoft.Compute/disks` resource of its own,
/// which outlives the VM: Compute 2020-06-01 has no `deleteOption`).
pub fn after_put(st: &mut State, ty: &str, id: &str) {
    if ty != "microsoft.compute/virtualmachines" {
        return;
    }
    let Some(vm) = st.get(id).cloned() else {
        return;
    };
    put_os_disk(st, &vm);
    let refs: Vec<Value> = vm.body["properties"]["networkProfile"]["networkInterfaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The primary NIC is the one marked so, or the first when none is (a single NIC is).
    let marked = refs
        .iter()
        .position(|n| n.pointer("/properties/primary") == Some(&json!(true)))
        .unwrap_or(0);
    for (i, nic_ref) in refs.iter().enumerate() {
        if let Some(nic) = nic_ref["id"].as_str().and_then(|id| st.get_mut(id)) {
            nic.body["properties"]["virtualMachine"] = json!({ "id": vm.id });
            nic.body["properties"]["primary"] = json!(i == marked);
        }
    }
}

/// The OS disk as Disks_Get (2019-07-01) shows it: `managedBy` the VM, `diskState` Attached.
fn put_os_disk(st: &mut State, vm: &Resource) {
    let os = &vm.body["properties"]["storageProfile"]["osDisk"];
    let Some(disk_id) = os["managedDisk"]["id"].as_str() else {
        return;
    };
    let body = match st.get(disk_id) {
        Some(existing) => {
            let mut body = existing.body.clone();
            body["managedBy"] = json!(vm.id);
            body["properties"]["diskState"] = json!("Attached");
            body
        }
        None => json!({
            "id": disk_id,
            "name": crate::ids::name_of(disk_id),
            "type": "Microsoft.Compute/disks",
            "location": vm.body["location"],
            "managedBy": vm.id,
            "sku": {"name": os["managedDisk"]["storageAccountType"].as_str().unwrap_or("Standard_LRS")},
            "properties": {
                "osType": os["osType"],
                "creationData": {"createOption": os["createOption"].as_str().unwrap_or("FromImage")},
                "diskSizeGB": os["diskSizeGB"].as_i64().unwrap_or(30),
                "timeCreated": chrono::Utc::now().to_rfc3339(),
                "provisioningState": "Succeeded",
                "diskState": "Attached",
            },
        }),
    };
    st.put(disk_id, body);
}

/// ARM refuses to delete a disk a VM still uses.
pub fn before_delete(ty: &str, res: &Resource) -> Result<(), ArmError> {
    match res.body["managedBy"].as_str() {
        Some(vm) if ty == "microsoft.compute/disks" => Err(ArmError::new(
            StatusCode::CONFLICT,
            "OperationNotAllowed",
            format!(
                "Disk {} is attached to VM {vm}.",
                crate::ids::name_of(&res.id)
            ),
        )),
        _ => Ok(()),
    }
}

/// `GET .../instanceView` and `$expand=instanceView`.
pub fn instance_view(res: &Resource) -> Value {
    let provisioning = res.body["properties"]["provisioningState"]
        .as_str()
        .unwrap_or("Succeeded");
    let now = crate::arm::timestamp(chrono::Utc::now());
    let provisioning_status = json!({
        "code": format!("ProvisioningState/{}", provisioning.to_ascii_lowercase()),
        "level": if provisioning == "Failed" { "Error" } else { "Info" },
        "displayStatus": format!("Provisioning {}", provisioning.to_ascii_lowercase()),
        "time": now,
    });
    let mut statuses = vec![provisioning_status.clone()];
    if let Some(power) = res.power {
        statuses.push(json!({
            "code": format!("PowerState/{}", power.code()),
            "level": "Info",
            "displayStatus": power.display(),
        }));
    }
    // The guest agent reports Ready while the VM runs (the sandbox "VM" is this machine).
    let agent_status = if res.power == Some(PowerState::Running) {
        json!([{
            "code": "ProvisioningState/succeeded",
            "level": "Info",
            "displayStatus": "Ready",
            "message": "Guest Agent is running",
            "time": now,
        }])
    } else {
        json!([])
    };
    let disks: Vec<Value> = res
        .body
        .pointer("/properties/storageProfile/osDisk/name")
        .and_then(Value::as_str)
        .map(|name| json!({ "name": name, "statuses": [provisioning_status] }))
        .into_iter()
        .collect();
    json!({
        "computerName": res.body["properties"]["osProfile"]["computerName"],
        "osName": "ubuntu",
        "vmAgent": { "vmAgentVersion": "2.2.45", "statuses": agent_status },
        "disks": disks,
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
