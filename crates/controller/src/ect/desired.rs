//! What Azure should hold for one EdgeComputeTarget: names, ids and request bodies. Pure.

use std::collections::BTreeMap;

use edgetrain_api::EdgeComputeTarget;
use edgetrain_azure::stackhub::{
    self, ImageReference, NetworkInterface, NetworkSecurityGroup, PublicIpAddress, ResourceGroup,
    VirtualMachine, VirtualNetwork,
};
use kube::ResourceExt;

use crate::{Error, Result};

/// Tag on every resource the operator creates: `namespace/name` of the owner.
pub const OWNER_TAG: &str = "edgetrain.dev/owner";
/// Tag on every resource the operator creates: the owner's `metadata.uid`, so that a target
/// re-created under the same name does not take over what its predecessor left behind.
pub const OWNER_UID_TAG: &str = "edgetrain.dev/owner-uid";
/// Annotation (`"true"`) that lets a target adopt existing Azure resources (and an Azure ML
/// compute) with its names although their owner tags do not name it.
pub const ADOPT_ANNOTATION: &str = "edgetrain.dev/adopt";

/// The owner tags of `ect`.
pub fn owner_tags(ect: &EdgeComputeTarget) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            OWNER_TAG.to_string(),
            format!("{}/{}", ect.namespace().unwrap_or_default(), ect.name_any()),
        ),
        (OWNER_UID_TAG.to_string(), ect.uid().unwrap_or_default()),
    ])
}

/// Whether `tags` name the same owner as `owner` (both tags equal).
pub fn owned_by(tags: Option<&BTreeMap<String, String>>, owner: &BTreeMap<String, String>) -> bool {
    tags.is_some_and(|t| {
        [OWNER_TAG, OWNER_UID_TAG]
            .iter()
            .all(|k| t.get(*k).is_some_and(|v| Some(v) == owner.get(*k)))
    })
}

/// Whether the target carries the adoption annotation.
pub fn adopts(ect: &EdgeComputeTarget) -> bool {
    ect.annotations()
        .get(ADOPT_ANNOTATION)
        .is_some_and(|v| v == "true")
}
/// Subnet name inside the vnet the operator creates.
pub const SUBNET_NAME: &str = "default";
/// Default address range of the operator's vnet/subnet.
pub const DEFAULT_ADDRESS_PREFIX: &str = "10.20.0.0/24";
/// Azure ML reaches the VM over SSH on this port.
pub const SSH_PORT: u16 = 22;
/// ARM names here are at most 64 characters; this leaves room for the suffixes.
const MAX_BASE_NAME: usize = 58;

/// ARM ids of everything the target involves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub nsg: String,
    /// Set when the operator creates the vnet (no `subnetId` given).
    pub vnet: Option<String>,
    pub subnet: String,
    pub public_ip: Option<String>,
    pub nic: String,
    pub vm: String,
}

/// The desired Stack Hub resources (bodies without the SSH key for the VM).
#[derive(Debug, Clone)]
pub struct Desired {
    pub ids: Ids,
    pub nsg: NetworkSecurityGroup,
    pub vnet: Option<VirtualNetwork>,
    pub public_ip: Option<PublicIpAddress>,
    pub nic: NetworkInterface,
    pub vm: stackhub::VmSpec,
    /// Owner tags every resource carries (see [`owner_tags`]).
    pub tags: BTreeMap<String, String>,
    /// Rules the NSG must hold, normalised for comparison.
    pub nsg_sources: Vec<String>,
    pub address_prefix: Option<String>,
}

/// `{namespace}-{name}`: unique per cluster within one resource group.
pub fn base_name(ect: &EdgeComputeTarget) -> Result<String> {
    let base = format!("{}-{}", ect.namespace().unwrap_or_default(), ect.name_any());
    if base.len() > MAX_BASE_NAME {
        return Err(Error::InvalidSpec(format!(
            "namespace-name {base:?} is longer than {MAX_BASE_NAME} characters; Azure resource names derived from it would not fit"
        )));
    }
    Ok(base)
}

/// The operator's cloud-config (Docker, the admin in the docker group), with the user's
/// additions as a second part of a MIME multi-part archive, which cloud-init merges.
pub fn cloud_init(admin: &str, extra: Option<&str>) -> String {
    let ours = format!(
        "#cloud-config\npackage_update: true\npackages:\n  - docker.io\nruncmd:\n  - [systemctl, enable, --now, docker]\n  - [usermod, -aG, docker, {admin}]\n"
    );
    match extra {
        None => ours,
        Some(extra) => {
            let b = "==edgetrain-cloud-init==";
            let part = |body: &str| {
                format!(
                    "--{b}\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nMIME-Version: 1.0\nMerge-Type: list(append)+dict(no_replace,recurse_list)+str()\n\n{body}\n"
                )
            };
            format!(
                "Content-Type: multipart/mixed; boundary=\"{b}\"\nMIME-Version: 1.0\n\n{}{}--{b}--\n",
                part(&ours),
                part(extra)
            )
        }
    }
}

/// Builds ids and bodies from the spec. `ssh_public_key` goes into the VM's authorized_keys.
pub fn desired(ect: &EdgeComputeTarget, ssh_public_key: &str) -> Result<Desired> {
    let spec = &ect.spec;
    let hub = &spec.stack_hub;
    let base = base_name(ect)?;
    let rg = ResourceGroup {
        subscription_id: hub.subscription_id.clone(),
        resource_group: hub.resource_group.clone(),
    };
    let bad = |e: edgetrain_azure::Error| Error::InvalidSpec(e.to_string());
    let tags = owner_tags(ect);
    let nsg_id = rg.nsg_id(&format!("{base}-nsg")).map_err(bad)?;
    let (vnet_id, subnet_id, vnet, address_prefix) = match &spec.vm.network.subnet_id {
        Some(subnet) => (None, subnet.clone(), None, None),
        None => {
            let name = format!("{base}-vnet");
            let prefix = spec
                .vm
                .network
                .address_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_ADDRESS_PREFIX.to_string());
            // The NSG guards the NIC; the subnet carries none so that a user-managed rule set
            // on a shared subnet is never overwritten.
            let body =
                stackhub::vnet_body(&hub.location, &prefix, SUBNET_NAME, &prefix, None, &tags)
                    .map_err(bad)?;
            (
                Some(rg.vnet_id(&name).map_err(bad)?),
                rg.subnet_id(&name, SUBNET_NAME).map_err(bad)?,
                Some(body),
                Some(prefix),
            )
        }
    };
    let (pip_id, pip) = if spec.vm.public_ip {
        (
            Some(rg.public_ip_id(&format!("{base}-pip")).map_err(bad)?),
            Some(stackhub::public_ip_body(&hub.location, None, &tags).map_err(bad)?),
        )
    } else {
        (None, None)
    };
    let nsg = stackhub::ssh_nsg_body(&hub.location, &spec.vm.allowed_ssh_sources, SSH_PORT, &tags)
        .map_err(bad)?;
    let nic_id = rg.nic_id(&format!("{base}-nic")).map_err(bad)?;
    let nic = stackhub::nic_body(
        &hub.location,
        &subnet_id,
        pip_id.as_deref(),
        Some(&nsg_id),
        &tags,
    )
    .map_err(bad)?;
    let image = &spec.vm.image;
    let vm = stackhub::VmSpec {
        location: hub.location.clone(),
        computer_name: base.clone(),
        size: spec.vm.size.clone(),
        image: ImageReference {
            publisher: Some(image.publisher.clone()),
            offer: Some(image.offer.clone()),
            sku: Some(image.sku.clone()),
            version: Some(image.version.clone()),
        },
        os_disk_size_gb: spec.vm.os_disk_size_gb,
        os_disk_storage_type: Some("Standard_LRS".into()),
        admin_username: spec.vm.admin_username.clone(),
        ssh_public_key: ssh_public_key.to_string(),
        cloud_init: Some(cloud_init(
            &spec.vm.admin_username,
            spec.vm.cloud_init.as_deref(),
        )),
        nic_id: nic_id.clone(),
        tags: tags.clone(),
    };
    let nsg_sources = nsg
        .properties
        .security_rules
        .iter()
        .filter_map(|r| r.properties.source_address_prefix.clone())
        .collect();
    Ok(Desired {
        ids: Ids {
            nsg: nsg_id,
            vnet: vnet_id,
            subnet: subnet_id,
            public_ip: pip_id,
            nic: nic_id,
            vm: rg.vm_id(&format!("{base}-vm")).map_err(bad)?,
        },
        nsg,
        vnet,
        public_ip: pip,
        nic,
        vm,
        tags,
        nsg_sources,
        address_prefix,
    })
}

impl Desired {
    pub fn vm_body(&self) -> Result<VirtualMachine> {
        stackhub::vm_body(&self.vm).map_err(|e| Error::InvalidSpec(e.to_string()))
    }
}

/// ARM ids deletion with `Delete` considers: what status recorded as created, plus every name
/// the target's resources can have (a public IP or vnet created under an earlier spec), plus
/// the compute. Empty when nothing was ever created, e.g. a spec that never became valid or
/// whose credentials never existed: such a target is deleted without touching Azure.
/// Whether each one is really ours is checked on its owner tags before it is deleted.
pub fn cleanup_ids(ect: &EdgeComputeTarget) -> Vec<String> {
    let status = ect.status.clone().unwrap_or_default();
    let mut ids = status.created_resources.clone();
    // Status written before `createdResources` existed still shows what was made.
    let legacy = status.vm_resource_id.is_some()
        || status.compute_id.is_some()
        || !status.pending_operations.is_empty();
    if ids.is_empty() && !legacy {
        return ids;
    }
    ids.extend(status.compute_id.clone());
    if let Ok(d) = desired(ect, "") {
        let rg = ResourceGroup {
            subscription_id: ect.spec.stack_hub.subscription_id.clone(),
            resource_group: ect.spec.stack_hub.resource_group.clone(),
        };
        let base = base_name(ect).unwrap_or_default();
        ids.extend([d.ids.vm, d.ids.nic, d.ids.nsg]);
        ids.extend(rg.public_ip_id(&format!("{base}-pip")));
        ids.extend(rg.vnet_id(&format!("{base}-vnet")));
    }
    let mut seen = std::collections::BTreeSet::new();
    ids.retain(|id| seen.insert(id.to_ascii_lowercase()));
    ids
}
