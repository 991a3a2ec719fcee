//! Microsoft.Network 2018-11-01 shapes we use (networkInterface.json, publicIpAddress.json,
//! networkSecurityGroup.json, virtualNetwork.json). Server-set fields are read but never sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compute::SubResource;

macro_rules! tracked_resource {
    ($(#[$m:meta])* $name:ident, $props:ty) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default, skip_serializing)]
            pub id: Option<String>,
            #[serde(default, skip_serializing)]
            pub name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub location: Option<String>,
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            pub tags: BTreeMap<String, String>,
            #[serde(default, skip_serializing)]
            pub etag: Option<String>,
            #[serde(default)]
            pub properties: $props,
        }
    };
}

tracked_resource!(
    /// `NetworkInterface`.
    NetworkInterface,
    NetworkInterfaceProperties
);
tracked_resource!(
    /// `PublicIPAddress` (its `sku` is set by [`PublicIpAddress::sku`]).
    PublicIpAddressResource,
    PublicIpAddressProperties
);
tracked_resource!(
    /// `NetworkSecurityGroup`.
    NetworkSecurityGroup,
    NetworkSecurityGroupProperties
);
tracked_resource!(
    /// `VirtualNetwork`.
    VirtualNetwork,
    VirtualNetworkProperties
);

/// `PublicIPAddress` with its top-level `sku`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PublicIpAddress {
    #[serde(flatten)]
    pub resource: PublicIpAddressResource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<PublicIpAddressSku>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PublicIpAddressSku {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceProperties {
    #[serde(default)]
    pub ip_configurations: Vec<NetworkInterfaceIpConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    #[serde(
        rename = "enableIPForwarding",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ip_forwarding: Option<bool>,
    /// The VM the NIC is attached to (read only).
    #[serde(default, skip_serializing)]
    pub virtual_machine: Option<SubResource>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NetworkInterfaceIpConfiguration {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub properties: IpConfigurationProperties,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IpConfigurationProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubResource>,
    #[serde(
        rename = "privateIPAllocationMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_allocation_method: Option<String>,
    #[serde(
        rename = "privateIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_address: Option<String>,
    #[serde(
        rename = "publicIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_address: Option<SubResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PublicIpAddressProperties {
    #[serde(
        rename = "publicIPAllocationMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_allocation_method: Option<String>,
    #[serde(
        rename = "publicIPAddressVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_address_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_settings: Option<PublicIpDnsSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_in_minutes: Option<i32>,
    /// Allocated address (server-assigned).
    #[serde(default, skip_serializing)]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PublicIpDnsSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name_label: Option<String>,
    #[serde(default, skip_serializing)]
    pub fqdn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSecurityGroupProperties {
    #[serde(default)]
    pub security_rules: Vec<SecurityRule>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SecurityRule {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    pub name: String,
    pub properties: SecurityRuleProperties,
}

/// `SecurityRulePropertiesFormat`; `protocol`, `access`, `direction` are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecurityRuleProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address_prefix: Option<String>,
    pub access: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    pub direction: String,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetworkProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<AddressSpace>,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AddressSpace {
    #[serde(default)]
    pub address_prefixes: Vec<String>,
}

/// `Subnet` (also the body of `.../subnets/{name}` PUTs, where `name` is omitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Subnet {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: SubnetProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubnetProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}
