//! Microsoft.Compute 2020-06-01 shapes we use (compute.json). Server-set fields are read but
//! never sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `SubResource`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl SubResource {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: Some(id.into()),
        }
    }
}

/// `VirtualMachine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachine {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    pub location: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub properties: VirtualMachineProperties,
}

/// `VirtualMachineProperties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_profile: Option<HardwareProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_profile: Option<StorageProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_profile: Option<OsProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing)]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub instance_view: Option<VirtualMachineInstanceView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<OsDisk>,
}

/// Marketplace image (publisher/offer/sku/version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `OSDisk`; `createOption` is required by the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caching: Option<String>,
    pub create_option: String,
    #[serde(
        rename = "diskSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDiskParameters>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDiskParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OsProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_username: Option<String>,
    /// Base64 cloud-init; ARM never returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_configuration: Option<LinuxConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LinuxConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_password_authentication: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfiguration>,
    #[serde(
        rename = "provisionVMAgent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provision_vm_agent: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SshConfiguration {
    #[serde(default)]
    pub public_keys: Vec<SshPublicKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SshPublicKey {
    pub path: String,
    pub key_data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterfaceReference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkInterfaceReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<NetworkInterfaceReferenceProperties>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkInterfaceReferenceProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// `VirtualMachineInstanceView` (read only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceView {
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
}

/// `InstanceViewStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InstanceViewStatus {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub display_status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

/// The VM's power state, from the `PowerState/...` instance-view status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Deallocating,
    Deallocated,
    /// No power-state status (e.g. while provisioning) or a code we do not know.
    Unknown(String),
}

impl PowerState {
    /// Read the power state from an instance view (pure).
    pub fn from_instance_view(iv: &VirtualMachineInstanceView) -> Self {
        let code = iv
            .statuses
            .iter()
            .filter_map(|s| s.code.as_deref())
            .find_map(|c| c.strip_prefix("PowerState/"));
        match code {
            Some("starting") => PowerState::Starting,
            Some("running") => PowerState::Running,
            Some("stopping") => PowerState::Stopping,
            Some("stopped") => PowerState::Stopped,
            Some("deallocating") => PowerState::Deallocating,
            Some("deallocated") => PowerState::Deallocated,
            Some(other) => PowerState::Unknown(other.to_string()),
            None => PowerState::Unknown(String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_state_from_statuses() {
        let iv: VirtualMachineInstanceView = serde_json::from_str(
            r#"{"computerName":"vm1","statuses":[
                {"code":"ProvisioningState/succeeded","level":"Info","displayStatus":"Provisioning succeeded"},
                {"code":"PowerState/deallocated","level":"Info","displayStatus":"VM deallocated"}]}"#,
        )
        .unwrap();
        assert_eq!(PowerState::from_instance_view(&iv), PowerState::Deallocated);
        let none = VirtualMachineInstanceView::default();
        assert_eq!(
            PowerState::from_instance_view(&none),
            PowerState::Unknown(String::new())
        );
    }

    #[test]
    fn read_only_fields_are_read_not_sent() {
        let vm: VirtualMachine = serde_json::from_str(
            r#"{"id":"/x","name":"vm1","location":"local","properties":{"provisioningState":"Succeeded","vmId":"guid",
                "instanceView":{"statuses":[{"code":"PowerState/running"}]}}}"#,
        )
        .unwrap();
        assert_eq!(
            vm.properties.provisioning_state.as_deref(),
            Some("Succeeded")
        );
        let out = serde_json::to_value(&vm).unwrap();
        assert_eq!(out, serde_json::json!({"location":"local","properties":{}}));
    }
}

/// A managed disk (`Disks_Get`, 2019-07-01), as far as deletion needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    #[serde(default)]
    pub id: String,
    /// The VM the disk is attached to; a disk cannot be deleted while it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    #[serde(default)]
    pub properties: DiskProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DiskProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// `Unattached`, `Attached`, `Reserved` (attached to a deallocated VM), ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
}
