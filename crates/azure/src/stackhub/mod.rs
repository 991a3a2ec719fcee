//! Azure Stack Hub compute and network: typed bodies, pure builders, and a client behind the
//! [`StackHubApi`] trait.

mod build;
mod compute;
mod network;

pub use build::*;
pub use compute::*;
pub use network::*;

use async_trait::async_trait;
use http::Method;
use serde::de::DeserializeOwned;

use crate::{
    Error, Result,
    arm::{ApiProfile, ArmClient, LroStatus, LroToken, Provider, Started},
    error::require_segment,
};

/// A subscription + resource group, where our resources live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    pub subscription_id: String,
    pub resource_group: String,
}

impl ResourceGroup {
    /// ARM id of `{namespace}/{type}/{name}` in this group.
    pub fn id(&self, namespace: &str, kind: &str, name: &str) -> Result<String> {
        require_segment("subscription id", &self.subscription_id)?;
        require_segment("resource group", &self.resource_group)?;
        require_segment("resource name", name)?;
        Ok(format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{namespace}/{kind}/{name}",
            self.subscription_id, self.resource_group
        ))
    }

    pub fn vm_id(&self, name: &str) -> Result<String> {
        self.id("Microsoft.Compute", "virtualMachines", name)
    }
    pub fn nic_id(&self, name: &str) -> Result<String> {
        self.id("Microsoft.Network", "networkInterfaces", name)
    }
    pub fn public_ip_id(&self, name: &str) -> Result<String> {
        self.id("Microsoft.Network", "publicIPAddresses", name)
    }
    pub fn nsg_id(&self, name: &str) -> Result<String> {
        self.id("Microsoft.Network", "networkSecurityGroups", name)
    }
    pub fn vnet_id(&self, name: &str) -> Result<String> {
        self.id("Microsoft.Network", "virtualNetworks", name)
    }
    pub fn subnet_id(&self, vnet: &str, subnet: &str) -> Result<String> {
        require_segment("subnet name", subnet)?;
        Ok(format!("{}/subnets/{subnet}", self.vnet_id(vnet)?))
    }
}

/// Which resource provider an ARM id belongs to (for its api-version).
pub fn provider_of(id: &str) -> Result<Provider> {
    let lower = id.to_ascii_lowercase();
    if lower.contains("/providers/microsoft.compute/disks/")
        || lower.contains("/providers/microsoft.compute/snapshots/")
    {
        Ok(Provider::ComputeDisks)
    } else if lower.contains("/providers/microsoft.compute/") {
        Ok(Provider::Compute)
    } else if lower.contains("/providers/microsoft.network/") {
        Ok(Provider::Network)
    } else if lower.contains("/providers/microsoft.storage/") {
        Ok(Provider::Storage)
    } else {
        Err(Error::InvalidInput(format!(
            "{id:?} is not a Compute, Network or Storage resource id"
        )))
    }
}

/// VM power actions (`POST .../virtualMachines/{vm}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    Start,
    Deallocate,
    PowerOff,
    Restart,
}

impl VmAction {
    pub fn path(self) -> &'static str {
        match self {
            VmAction::Start => "start",
            VmAction::Deallocate => "deallocate",
            VmAction::PowerOff => "powerOff",
            VmAction::Restart => "restart",
        }
    }
}

/// Stack Hub compute/network operations. Mutations return [`Started`]: either done, or an
/// [`LroToken`] to keep in status and [`StackHubApi::poll`] on later reconciles. Getters return
/// `None` for 404.
#[async_trait]
pub trait StackHubApi: Send + Sync {
    async fn get_vm(&self, id: &str, with_instance_view: bool) -> Result<Option<VirtualMachine>>;
    async fn get_vm_instance_view(&self, id: &str) -> Result<Option<VirtualMachineInstanceView>>;
    async fn put_vm(&self, id: &str, body: &VirtualMachine) -> Result<Started>;
    /// `VirtualMachines_Update` (PATCH) carrying only `hardwareProfile.vmSize`: nothing else of
    /// the VM is restated, so no property Azure refuses to change (osProfile) and no property
    /// this crate does not model can be lost.
    async fn patch_vm_size(&self, id: &str, size: &str) -> Result<Started>;
    async fn vm_action(&self, id: &str, action: VmAction) -> Result<Started>;
    async fn get_nic(&self, id: &str) -> Result<Option<NetworkInterface>>;
    async fn put_nic(&self, id: &str, body: &NetworkInterface) -> Result<Started>;
    async fn get_public_ip(&self, id: &str) -> Result<Option<PublicIpAddress>>;
    async fn put_public_ip(&self, id: &str, body: &PublicIpAddress) -> Result<Started>;
    async fn get_nsg(&self, id: &str) -> Result<Option<NetworkSecurityGroup>>;
    async fn put_nsg(&self, id: &str, body: &NetworkSecurityGroup) -> Result<Started>;
    async fn get_vnet(&self, id: &str) -> Result<Option<VirtualNetwork>>;
    async fn put_vnet(&self, id: &str, body: &VirtualNetwork) -> Result<Started>;
    async fn get_subnet(&self, id: &str) -> Result<Option<Subnet>>;
    async fn put_subnet(&self, id: &str, body: &Subnet) -> Result<Started>;
    /// `Disks_Get` (the profile's disks api-version).
    async fn get_disk(&self, id: &str) -> Result<Option<Disk>>;
    /// Delete any Compute or Network resource by id.
    async fn delete(&self, id: &str) -> Result<Started>;
    async fn poll(&self, token: &LroToken) -> Result<LroStatus>;
}

/// [`StackHubApi`] over an [`ArmClient`] pointed at the stamp's ARM.
#[derive(Debug, Clone)]
pub struct StackHubClient {
    arm: ArmClient,
    profile: ApiProfile,
}

impl StackHubClient {
    pub fn new(arm: ArmClient, profile: ApiProfile) -> Self {
        Self { arm, profile }
    }

    pub fn arm(&self) -> &ArmClient {
        &self.arm
    }

    fn url(&self, id: &str, query: &[(&str, &str)]) -> Result<url::Url> {
        let v = self.profile.api_version(provider_of(id)?);
        self.arm.url(id, v, query)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        id: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<T>> {
        self.arm.get_json(self.url(id, query)?).await
    }

    async fn put<T: serde::Serialize + Sync>(&self, id: &str, body: &T) -> Result<Started> {
        let json = serde_json::to_value(body).map_err(|e| Error::decode("request body", e))?;
        self.arm
            .begin(Method::PUT, self.url(id, &[])?, id, Some(&json))
            .await
    }
}

#[async_trait]
impl StackHubApi for StackHubClient {
    async fn get_vm(&self, id: &str, with_instance_view: bool) -> Result<Option<VirtualMachine>> {
        let q: &[(&str, &str)] = if with_instance_view {
            &[("$expand", "instanceView")]
        } else {
            &[]
        };
        self.get(id, q).await
    }

    async fn get_vm_instance_view(&self, id: &str) -> Result<Option<VirtualMachineInstanceView>> {
        self.get(&format!("{id}/instanceView"), &[]).await
    }

    async fn put_vm(&self, id: &str, body: &VirtualMachine) -> Result<Started> {
        self.put(id, body).await
    }

    async fn patch_vm_size(&self, id: &str, size: &str) -> Result<Started> {
        let body = serde_json::json!({"properties": {"hardwareProfile": {"vmSize": size}}});
        self.arm
            .begin(Method::PATCH, self.url(id, &[])?, id, Some(&body))
            .await
    }

    async fn vm_action(&self, id: &str, action: VmAction) -> Result<Started> {
        let url = self.url(&format!("{id}/{}", action.path()), &[])?;
        self.arm.begin(Method::POST, url, id, None).await
    }

    async fn get_nic(&self, id: &str) -> Result<Option<NetworkInterface>> {
        self.get(id, &[]).await
    }
    async fn put_nic(&self, id: &str, body: &NetworkInterface) -> Result<Started> {
        self.put(id, body).await
    }
    async fn get_public_ip(&self, id: &str) -> Result<Option<PublicIpAddress>> {
        self.get(id, &[]).await
    }
    async fn put_public_ip(&self, id: &str, body: &PublicIpAddress) -> Result<Started> {
        self.put(id, body).await
    }
    async fn get_nsg(&self, id: &str) -> Result<Option<NetworkSecurityGroup>> {
        self.get(id, &[]).await
    }
    async fn put_nsg(&self, id: &str, body: &NetworkSecurityGroup) -> Result<Started> {
        self.put(id, body).await
    }
    async fn get_vnet(&self, id: &str) -> Result<Option<VirtualNetwork>> {
        self.get(id, &[]).await
    }
    async fn put_vnet(&self, id: &str, body: &VirtualNetwork) -> Result<Started> {
        self.put(id, body).await
    }
    async fn get_subnet(&self, id: &str) -> Result<Option<Subnet>> {
        self.get(id, &[]).await
    }
    async fn put_subnet(&self, id: &str, body: &Subnet) -> Result<Started> {
        self.put(id, body).await
    }

    async fn get_disk(&self, id: &str) -> Result<Option<Disk>> {
        self.get(id, &[]).await
    }

    async fn delete(&self, id: &str) -> Result<Started> {
        match self
            .arm
            .begin(Method::DELETE, self.url(id, &[])?, id, None)
            .await
        {
            // Already gone counts as deleted.
            Err(Error::Arm(e)) if e.is_not_found() => Ok(Started::Done {
                status: 404,
                body: serde_json::Value::Null,
            }),
            other => other,
        }
    }

    async fn poll(&self, token: &LroToken) -> Result<LroStatus> {
        self.arm.poll(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_providers() {
        let rg = ResourceGroup {
            subscription_id: "sub".into(),
            resource_group: "rg".into(),
        };
        let vm = rg.vm_id("vm1").unwrap();
        assert_eq!(
            vm,
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
        );
        assert_eq!(provider_of(&vm).unwrap(), Provider::Compute);
        assert_eq!(
            provider_of("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d")
                .unwrap(),
            Provider::ComputeDisks
        );
        let snet = rg.subnet_id("vnet", "default").unwrap();
        assert!(snet.ends_with("/virtualNetworks/vnet/subnets/default"));
        assert_eq!(provider_of(&snet).unwrap(), Provider::Network);
        assert!(rg.vm_id("a/b").is_err());
        for bad in ["..", ".", ""] {
            let escaped = ResourceGroup {
                subscription_id: "sub".into(),
                resource_group: bad.into(),
            };
            assert!(escaped.vm_id("vm1").is_err(), "{bad:?}");
            assert!(rg.vm_id(bad).is_err(), "{bad:?}");
        }
        assert!(provider_of("/subscriptions/s/resourceGroups/rg").is_err());
    }
}
