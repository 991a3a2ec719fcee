//! `EdgeComputeTarget`: one Ubuntu + Docker VM on Azure Stack Hub, attached to one Azure ML
//! workspace as a compute target.

// `printcolumn(type_ = "string", ...)` repeats per column by design; clippy reads the
// repetition as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    DeletionPolicy, PendingOperation, RESOURCE_GROUP_PATTERN, SUBSCRIPTION_ID_PATTERN,
    SecretReference,
};

/// One training VM on Azure Stack Hub, attached to one Azure ML workspace as a compute target.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, derive(Default))]
#[kube(
    group = "edgetrain.dev",
    version = "v1alpha1",
    kind = "EdgeComputeTarget",
    namespaced,
    status = "EdgeComputeTargetStatus",
    shortname = "ect",
    category = "edgetrain",
    doc = "A training VM on Azure Stack Hub (Ubuntu + Docker), attached to an Azure ML workspace as a compute target.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Power", type_ = "string", json_path = ".status.powerState"),
    printcolumn(name = "Address", type_ = "string", json_path = ".status.publicIP"),
    printcolumn(
        name = "Compute",
        type_ = "string",
        json_path = ".spec.azureML.computeName"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Size",
        type_ = "string",
        json_path = ".spec.vm.size",
        priority = 1
    ),
    printcolumn(
        name = "VM",
        type_ = "string",
        json_path = ".status.vmResourceId",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.vm.publicIP) && !self.vm.publicIP) ? (has(self.azureML.reachVia) && self.azureML.reachVia == 'Private') : true").message("vm.publicIP is false: set azureML.reachVia to Private (the workspace reaches the VM's private address through a VPN/ExpressRoute), or give the VM a public IP"))]
pub struct EdgeComputeTargetSpec {
    /// Where the VM lives: the Azure Stack Hub stamp, subscription and resource group.
    pub stack_hub: StackHubSpec,
    /// The virtual machine to run (or adopt).
    pub vm: VmSpec,
    /// The Azure ML workspace to attach the VM to.
    #[serde(rename = "azureML")]
    pub azure_ml: AzureMlSpec,
    /// Deallocate the VM after it has had no active TrainingRun for this long (Go duration, at
    /// least 5m); it is started again when a TrainingRun needs it. Unset: always on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_duration")]
    #[x_kube(validation = Rule::new("self >= duration('5m')").message("idleTimeout must be at least 5m"))]
    pub idle_timeout: Option<String>,
    /// SSH key rotation for the VM's administrator account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_rotation: Option<SshKeyRotation>,
    /// What happens in Azure when this object is deleted: `Retain` leaves the VM and the
    /// attachment; `Delete` detaches the compute and deletes what the operator created.
    /// Unset: the operator's configured default (`Retain` unless installed otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// The Azure Stack Hub side.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, derive(Default))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.subscriptionId == oldSelf.subscriptionId && self.resourceGroup == oldSelf.resourceGroup && self.location == oldSelf.location").message("stackHub subscriptionId, resourceGroup and location are immutable: create a new EdgeComputeTarget to move a VM"))]
pub struct StackHubSpec {
    /// Stack Hub's user Resource Manager endpoint, e.g.
    /// `https://management.local.azurestack.external`. Must be https (plain http is accepted for
    /// loopback addresses only, e.g. a local proxy). The identity system (Azure AD or AD FS) and
    /// the token audience are discovered from `{armEndpoint}/metadata/endpoints`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['127.0.0.1', 'localhost', '::1']))").message("armEndpoint must be an https URL (http only for loopback)"))]
    pub arm_endpoint: String,
    /// Stack Hub region name, e.g. `local`.
    #[schemars(length(min = 1, max = 64))]
    pub location: String,
    /// Subscription id on the stamp (a GUID).
    #[schemars(regex(pattern = SUBSCRIPTION_ID_PATTERN))]
    pub subscription_id: String,
    /// Resource group that holds the VM and its network pieces (must exist).
    #[schemars(regex(pattern = RESOURCE_GROUP_PATTERN))]
    pub resource_group: String,
    /// Secret with the service principal: keys `tenantId`, `clientId`, `clientSecret`.
    pub credentials_secret_ref: SecretReference,
    /// Azure Stack Hub API profile: pins the api-version of each resource provider.
    #[serde(default)]
    pub api_profile: ApiProfile,
}

/// Azure Stack Hub API profiles the operator speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ApiProfile {
    /// Compute 2020-06-01, Network 2018-11-01, Storage 2019-06-01.
    #[default]
    #[serde(rename = "2020-09-01-hybrid")]
    Hybrid20200901,
    /// Compute 2017-03-30, Network 2017-10-01, Storage 2017-10-01 (older stamps).
    #[serde(rename = "2019-03-01-hybrid")]
    Hybrid20190301,
}

/// The VM.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, derive(Default))]
#[serde(rename_all = "camelCase")]
pub struct VmSpec {
    /// VM size offered by the stamp, e.g. `Standard_DS3_v2`. Changing it deallocates, resizes
    /// and starts the VM.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_]{1,64}$"))]
    pub size: String,
    /// Marketplace image. Immutable: a different image means a different VM.
    #[x_kube(validation = Rule::new("self == oldSelf").message("vm.image is immutable: create a new EdgeComputeTarget for another image"))]
    pub image: ImageReference,
    /// OS disk size in GiB (30 to 1023). Unset: the image's default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "osDiskSizeGB"
    )]
    #[schemars(range(min = 30, max = 1023))]
    pub os_disk_size_gb: Option<i32>,
    /// Administrator user name on the VM (SSH key login only). Immutable.
    #[serde(default = "default_admin")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_-]{0,31}$"))]
    #[x_kube(validation = Rule::new("!(self in ['root', 'admin', 'administrator', 'sys', 'daemon', 'bin'])").message("vm.adminUsername may not be a reserved name"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("vm.adminUsername is immutable"))]
    pub admin_username: String,
    /// Network placement.
    #[serde(default)]
    pub network: VmNetwork,
    /// Give the VM a public IP address (static), used as the address Azure ML connects to.
    /// Without one, Azure ML must reach the private address (VPN/ExpressRoute).
    #[serde(default = "default_true", rename = "publicIP")]
    pub public_ip: bool,
    /// Source CIDRs allowed to reach SSH (port 22) through the network security group. At least
    /// one; include Azure ML's outbound ranges. `0.0.0.0/0` is allowed but discouraged.
    #[schemars(length(min = 1, max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("allowedSshSources must be CIDRs, e.g. 203.0.113.0/24"))]
    pub allowed_ssh_sources: Vec<String>,
    /// Extra cloud-config (YAML, starting with `#cloud-config`) merged after the operator's own,
    /// which installs Docker. Never put secrets here: custom data is readable on the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    #[x_kube(validation = Rule::new("self.startsWith('#cloud-config')").message("vm.cloudInit must start with #cloud-config"))]
    pub cloud_init: Option<String>,
}

/// A marketplace image reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    /// e.g. `Canonical`.
    #[schemars(length(min = 1, max = 128))]
    pub publisher: String,
    /// e.g. `0001-com-ubuntu-server-jammy`.
    #[schemars(length(min = 1, max = 128))]
    pub offer: String,
    /// e.g. `22_04-lts-gen1` (Stack Hub runs generation 1 VMs only).
    #[schemars(length(min = 1, max = 128))]
    pub sku: String,
    /// Image version, or `latest`.
    #[serde(default = "default_latest")]
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
}

/// Where the VM's NIC goes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.subnetId) && has(self.addressPrefix))").message("network: set either subnetId (use an existing subnet) or addressPrefix (the operator creates a vnet), not both"))]
pub struct VmNetwork {
    /// ARM id of an existing subnet to use. Unset: the operator creates a virtual network and
    /// subnet of its own named after the EdgeComputeTarget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^/(?i:subscriptions)/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/(?i:resourceGroups)/[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]/(?i:providers/Microsoft\.Network/virtualNetworks)/[A-Za-z0-9]([-A-Za-z0-9_.]{0,62}[A-Za-z0-9_])?/(?i:subnets)/[A-Za-z0-9]([-A-Za-z0-9_.]{0,78}[A-Za-z0-9_])?$"
    ))]
    pub subnet_id: Option<String>,
    /// Address range of the vnet/subnet the operator creates (default `10.20.0.0/24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 18))]
    #[x_kube(validation = Rule::new("isCIDR(self) && !self.contains(':') && cidr(self).prefixLength() <= 29").message("addressPrefix must be an IPv4 CIDR of /29 or larger"))]
    pub address_prefix: Option<String>,
}

/// The Azure ML side (public Azure).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, derive(Default))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.workspace == oldSelf.workspace && self.computeName == oldSelf.computeName && self.subscriptionId == oldSelf.subscriptionId && self.resourceGroup == oldSelf.resourceGroup").message("azureML workspace, computeName, subscriptionId and resourceGroup are immutable"))]
pub struct AzureMlSpec {
    /// Public Azure Resource Manager endpoint (sovereign clouds differ).
    #[serde(default = "default_public_arm")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['127.0.0.1', 'localhost', '::1']))").message("armEndpoint must be an https URL (http only for loopback)"))]
    pub arm_endpoint: String,
    /// Subscription of the workspace (a GUID).
    #[schemars(regex(pattern = SUBSCRIPTION_ID_PATTERN))]
    pub subscription_id: String,
    /// Resource group of the workspace.
    #[schemars(regex(pattern = RESOURCE_GROUP_PATTERN))]
    pub resource_group: String,
    /// Workspace name.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$"))]
    pub workspace: String,
    /// Name of the compute target in the workspace (2 to 16 letters, digits and hyphens,
    /// starting with a letter).
    #[schemars(regex(pattern = r"^[a-zA-Z][a-zA-Z0-9-]{1,15}$"))]
    pub compute_name: String,
    /// Secret with the service principal for public Azure: keys `tenantId`, `clientId`,
    /// `clientSecret`.
    pub credentials_secret_ref: SecretReference,
    /// Which address of the VM the workspace connects to over SSH: `Public` (default, needs
    /// `vm.publicIP`) or `Private`, when the workspace reaches the stamp's network through a
    /// site-to-site VPN or ExpressRoute. There is no fallback from one to the other.
    #[serde(default)]
    pub reach_via: ReachVia,
}

/// The VM address Azure ML connects to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ReachVia {
    /// The VM's public IP address.
    #[default]
    Public,
    /// The VM's private address (site-to-site VPN or ExpressRoute between workspace and stamp).
    Private,
}

/// A resource whose provisioning ended `Failed`, and the operator's bounded retries of it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningFailure {
    /// ARM id of the resource.
    pub resource_id: String,
    /// Azure's error code, when Azure gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Azure's error message, when Azure gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Writes made again after the failure.
    #[serde(default)]
    pub retries: u32,
    /// When the last retry was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retry: Option<Time>,
}

/// When to rotate the SSH key pair the operator generated for the VM.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SshKeyRotation {
    /// Change this value (any string, e.g. a date) to rotate the key now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub token: Option<String>,
    /// Rotate automatically when the key is older than this (Go duration, at least 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_duration")]
    #[x_kube(validation = Rule::new("self >= duration('1h')").message("sshKeyRotation.maxAge must be at least 1h"))]
    pub max_age: Option<String>,
}

/// Power state of the VM as Stack Hub reports it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PowerState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Deallocating,
    Deallocated,
    Unknown,
}

/// Observed state of an EdgeComputeTarget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EdgeComputeTargetStatus {
    /// Conditions: `VMReady`, `ComputeAttached`, `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// While `Stalled`: a digest of the inputs it stalled on (generation, annotations,
    /// referenced Secrets' versions). Until one of them changes the controller makes no Azure
    /// call for this object, also after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_inputs: Option<String>,
    /// ARM id of the VM on Stack Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_resource_id: Option<String>,
    /// The VM's private address.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "privateIP")]
    pub private_ip: Option<String>,
    /// The VM's public address, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "publicIP")]
    pub public_ip: Option<String>,
    /// Power state of the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
    /// VM size currently applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// ARM id of the Azure ML compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_id: Option<String>,
    /// Azure ML's provisioning state of the compute (`Creating`, `Succeeded`, `Failed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_provisioning_state: Option<String>,
    /// Name of the Secret (owned by this object) holding the generated SSH key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_secret_name: Option<String>,
    /// SHA256 fingerprint of the public key in use (public information).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_fingerprint: Option<String>,
    /// When the SSH key was last generated or rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_rotated_at: Option<Time>,
    /// The rotation token the current key answers (see spec.sshKeyRotation.token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_rotation_token: Option<String>,
    /// When a TrainingRun on this target was last active (drives idleTimeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_time: Option<Time>,
    /// Long-running Azure operations in flight, resumed on the next reconcile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_operations: Vec<PendingOperation>,
    /// ARM ids of the Azure resources this target created. Deletion with `Delete` removes
    /// these, whatever the spec says by then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_resources: Vec<String>,
    /// Resources whose provisioning failed, with the retries made (bounded; then `Stalled`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioning_failures: Vec<ProvisioningFailure>,
}

fn default_admin() -> String {
    "azureuser".to_string()
}
fn default_true() -> bool {
    true
}
fn default_latest() -> String {
    "latest".to_string()
}
fn default_public_arm() -> String {
    "https://management.azure.com".to_string()
}
