//! How the VM becomes an Azure ML compute target: one small seam, so that a second mode (an
//! Arc-enabled Kubernetes cluster on the VM, Azure ML `Kubernetes` compute) can be added
//! without touching observe/decide/apply.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use edgetrain_azure::{
    arm::Started,
    ml::{ComputeResource, MlApi, VmAttachSpec, Workspace, vm_attach_body},
};

use super::desired::SSH_PORT;
use crate::{Error, Result, ssh::KeyPair};

/// Where and how Azure ML reaches the VM.
#[derive(Debug)]
pub struct AttachTarget<'a> {
    /// The address `spec.azureML.reachVia` names (public or private IP).
    pub address: &'a str,
    pub username: &'a str,
    pub key: &'a KeyPair,
    pub vm_size: &'a str,
    /// Owner tags (a compute without them is never taken over, see `decide`).
    pub tags: &'a BTreeMap<String, String>,
}

/// One compute in one workspace.
#[async_trait]
pub trait ComputeAttacher: Send + Sync {
    /// ARM id of the compute (where its operations are tracked).
    fn compute_id(&self) -> Result<String>;
    fn name(&self) -> &str;
    async fn get(&self) -> Result<Option<ComputeResource>>;
    async fn attach(&self, target: &AttachTarget<'_>) -> Result<Started>;
    /// Detaches without deleting the VM; a missing compute counts as detached.
    async fn detach(&self) -> Result<Started>;
}

/// Azure ML `VirtualMachine` compute: address, SSH port 22, admin account with the key.
pub struct VirtualMachineAttacher {
    pub ml: Arc<dyn MlApi>,
    pub workspace: Workspace,
    pub compute_name: String,
}

#[async_trait]
impl ComputeAttacher for VirtualMachineAttacher {
    fn compute_id(&self) -> Result<String> {
        self.workspace
            .compute_id(&self.compute_name)
            .map_err(|e| Error::InvalidSpec(e.to_string()))
    }

    fn name(&self) -> &str {
        &self.compute_name
    }

    async fn get(&self) -> Result<Option<ComputeResource>> {
        self.ml
            .get_compute(&self.compute_name)
            .await
            .map_err(|e| Error::azure(format!("reading compute {}", self.compute_name), e))
    }

    /// The compute is created in the workspace's region (ARM refuses any other), read with
    /// `Workspaces_Get`; a missing workspace is a stalled condition, not a retried 404.
    async fn attach(&self, t: &AttachTarget<'_>) -> Result<Started> {
        let workspace = self
            .ml
            .get_workspace()
            .await
            .map_err(|e| Error::azure(format!("reading workspace {}", self.workspace.name), e))?
            .ok_or_else(|| Error::WorkspaceNotFound {
                workspace: self.workspace.name.clone(),
                resource_group: self.workspace.resource_group.clone(),
            })?;
        let mut body = vm_attach_body(&VmAttachSpec {
            location: workspace.location,
            address: t.address.to_string(),
            ssh_port: SSH_PORT,
            username: t.username.to_string(),
            private_key_pem: t.key.private_pem().clone(),
            public_key: t.key.public_openssh.clone(),
            description: Some("edgetrain EdgeComputeTarget".into()),
            vm_size: Some(t.vm_size.to_string()),
        })
        .map_err(|e| Error::InvalidSpec(e.to_string()))?;
        body.tags = Some(t.tags.clone());
        self.ml
            .attach_compute(&self.compute_name, &body)
            .await
            .map_err(|e| Error::azure(format!("attaching compute {}", self.compute_name), e))
    }

    async fn detach(&self) -> Result<Started> {
        self.ml
            .detach_compute(&self.compute_name)
            .await
            .map_err(|e| Error::azure(format!("detaching compute {}", self.compute_name), e))
    }
}
