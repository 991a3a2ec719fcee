//! Pure builders: desired spec in, request body out.

use std::{collections::BTreeMap, net::IpAddr};

use base64::Engine;

use super::{compute::*, network::*};
use crate::{Error, Result, error::require_non_empty};

/// Everything needed to describe the training VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub location: String,
    /// Also the Linux computer name.
    pub computer_name: String,
    pub size: String,
    pub image: ImageReference,
    pub os_disk_size_gb: Option<i32>,
    /// `Standard_LRS` or `Premium_LRS` on Stack Hub.
    pub os_disk_storage_type: Option<String>,
    pub admin_username: String,
    /// OpenSSH public key line (`ssh-ed25519 ...` or `ssh-rsa ...`).
    pub ssh_public_key: String,
    /// cloud-init text; sent base64-encoded as `customData`.
    pub cloud_init: Option<String>,
    pub nic_id: String,
    pub tags: BTreeMap<String, String>,
}

/// Decoded `customData` limit from compute.json.
const MAX_CUSTOM_DATA: usize = 65_535;

/// The `PUT virtualMachines/{name}` body for a Linux VM with key-only SSH and one NIC.
pub fn vm_body(spec: &VmSpec) -> Result<VirtualMachine> {
    require_non_empty("location", &spec.location)?;
    require_non_empty("computer name", &spec.computer_name)?;
    require_non_empty("VM size", &spec.size)?;
    require_non_empty("admin user name", &spec.admin_username)?;
    require_non_empty("SSH public key", &spec.ssh_public_key)?;
    require_non_empty("NIC id", &spec.nic_id)?;
    if spec.computer_name.len() > 64 {
        return Err(Error::InvalidInput(format!(
            "computer name {:?} is longer than 64 characters",
            spec.computer_name
        )));
    }
    if spec.admin_username.contains(['/', ' ', ':']) {
        return Err(Error::InvalidInput(format!(
            "admin user name {:?} contains '/', ' ' or ':'",
            spec.admin_username
        )));
    }
    let custom_data = match &spec.cloud_init {
        Some(ci) if ci.len() > MAX_CUSTOM_DATA => {
            return Err(Error::InvalidInput(format!(
                "cloud-init is {} bytes; Azure accepts at most {MAX_CUSTOM_DATA}",
                ci.len()
            )));
        }
        Some(ci) => Some(base64::engine::general_purpose::STANDARD.encode(ci)),
        None => None,
    };
    Ok(VirtualMachine {
        location: spec.location.clone(),
        tags: spec.tags.clone(),
        properties: VirtualMachineProperties {
            hardware_profile: Some(HardwareProfile {
                vm_size: Some(spec.size.clone()),
            }),
            storage_profile: Some(StorageProfile {
                image_reference: Some(spec.image.clone()),
                os_disk: Some(OsDisk {
                    create_option: "FromImage".into(),
                    caching: Some("ReadWrite".into()),
                    disk_size_gb: spec.os_disk_size_gb,
                    managed_disk: spec.os_disk_storage_type.clone().map(|t| {
                        ManagedDiskParameters {
                            storage_account_type: Some(t),
                            id: None,
                        }
                    }),
                    ..Default::default()
                }),
            }),
            os_profile: Some(OsProfile {
                computer_name: Some(spec.computer_name.clone()),
                admin_username: Some(spec.admin_username.clone()),
                custom_data,
                linux_configuration: Some(LinuxConfiguration {
                    disable_password_authentication: Some(true),
                    ssh: Some(SshConfiguration {
                        public_keys: vec![SshPublicKey {
                            path: format!("/home/{}/.ssh/authorized_keys", spec.admin_username),
                            key_data: spec.ssh_public_key.trim().to_string(),
                        }],
                    }),
                    provision_vm_agent: Some(true),
                }),
            }),
            network_profile: Some(NetworkProfile {
                network_interfaces: vec![NetworkInterfaceReference {
                    id: Some(spec.nic_id.clone()),
                    properties: Some(NetworkInterfaceReferenceProperties {
                        primary: Some(true),
                    }),
                }],
            }),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Validate an address prefix: an IP or `ip/len`. Returns it normalised (trimmed).
pub fn parse_cidr(s: &str) -> Result<String> {
    let t = s.trim();
    let (ip, len) = match t.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (t, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| Error::InvalidInput(format!("{s:?} is not an IP address or CIDR")))?;
    if let Some(len) = len {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match len.parse::<u8>() {
            Ok(l) if l <= max => {}
            _ => {
                return Err(Error::InvalidInput(format!(
                    "{s:?}: prefix length must be 0..={max}"
                )));
            }
        }
    }
    Ok(t.to_string())
}

/// First priority used for our SSH rules; ARM allows 100..=4096.
const FIRST_PRIORITY: i32 = 100;
const LAST_PRIORITY: i32 = 4096;

/// An NSG allowing inbound TCP to `ssh_port` from each CIDR, one rule per source. Stack Hub does
/// not support augmented rules (`sourceAddressPrefixes`), hence one rule each. An empty list
/// gives an NSG with no allow rule (ARM's defaults deny inbound from the Internet).
pub fn ssh_nsg_body(
    location: &str,
    allowed_sources: &[String],
    ssh_port: u16,
    tags: &BTreeMap<String, String>,
) -> Result<NetworkSecurityGroup> {
    require_non_empty("location", location)?;
    if allowed_sources.len() > (LAST_PRIORITY - FIRST_PRIORITY + 1) as usize {
        return Err(Error::InvalidInput(format!(
            "{} SSH sources exceed the NSG priority range",
            allowed_sources.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut rules = Vec::new();
    for src in allowed_sources {
        let cidr = parse_cidr(src)?;
        if !seen.insert(cidr.clone()) {
            continue;
        }
        let i = rules.len() as i32;
        rules.push(SecurityRule {
            id: None,
            name: format!("allow-ssh-{i}"),
            properties: SecurityRuleProperties {
                description: Some(format!("SSH from {cidr} (edgetrain)")),
                protocol: "Tcp".into(),
                source_port_range: Some("*".into()),
                destination_port_range: Some(ssh_port.to_string()),
                source_address_prefix: Some(cidr),
                destination_address_prefix: Some("*".into()),
                access: "Allow".into(),
                priority: Some(FIRST_PRIORITY + i),
                direction: "Inbound".into(),
                provisioning_state: None,
            },
        });
    }
    Ok(NetworkSecurityGroup {
        location: Some(location.to_string()),
        tags: tags.clone(),
        properties: NetworkSecurityGroupProperties {
            security_rules: rules,
            provisioning_state: None,
        },
        ..Default::default()
    })
}

/// A static IPv4 public IP (a dynamic one has no address until the VM runs, and Azure ML needs
/// the address to attach).
pub fn public_ip_body(
    location: &str,
    dns_label: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> Result<PublicIpAddress> {
    require_non_empty("location", location)?;
    Ok(PublicIpAddress {
        resource: PublicIpAddressResource {
            location: Some(location.to_string()),
            tags: tags.clone(),
            properties: PublicIpAddressProperties {
                public_ip_allocation_method: Some("Static".into()),
                public_ip_address_version: Some("IPv4".into()),
                dns_settings: dns_label.map(|l| PublicIpDnsSettings {
                    domain_name_label: Some(l.to_string()),
                    fqdn: None,
                }),
                ..Default::default()
            },
            ..Default::default()
        },
        sku: Some(PublicIpAddressSku {
            name: "Basic".into(),
        }),
    })
}

/// A NIC with one dynamic private IP in `subnet_id`, optionally a public IP and an NSG.
pub fn nic_body(
    location: &str,
    subnet_id: &str,
    public_ip_id: Option<&str>,
    nsg_id: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> Result<NetworkInterface> {
    require_non_empty("location", location)?;
    require_non_empty("subnet id", subnet_id)?;
    Ok(NetworkInterface {
        location: Some(location.to_string()),
        tags: tags.clone(),
        properties: NetworkInterfaceProperties {
            ip_configurations: vec![NetworkInterfaceIpConfiguration {
                id: None,
                name: "ipconfig1".into(),
                properties: IpConfigurationProperties {
                    subnet: Some(SubResource::new(subnet_id)),
                    private_ip_allocation_method: Some("Dynamic".into()),
                    private_ip_address: None,
                    public_ip_address: public_ip_id.map(SubResource::new),
                    primary: Some(true),
                },
            }],
            network_security_group: nsg_id.map(SubResource::new),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// A virtual network with one subnet.
pub fn vnet_body(
    location: &str,
    address_prefix: &str,
    subnet_name: &str,
    subnet_prefix: &str,
    nsg_id: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> Result<VirtualNetwork> {
    require_non_empty("location", location)?;
    require_non_empty("subnet name", subnet_name)?;
    let mut subnet = subnet_body(subnet_prefix, nsg_id)?;
    subnet.name = Some(subnet_name.to_string());
    Ok(VirtualNetwork {
        location: Some(location.to_string()),
        tags: tags.clone(),
        properties: VirtualNetworkProperties {
            address_space: Some(AddressSpace {
                address_prefixes: vec![parse_cidr(address_prefix)?],
            }),
            subnets: vec![subnet],
            provisioning_state: None,
        },
        ..Default::default()
    })
}

/// Body of `PUT .../virtualNetworks/{vnet}/subnets/{name}`.
pub fn subnet_body(address_prefix: &str, nsg_id: Option<&str>) -> Result<Subnet> {
    Ok(Subnet {
        id: None,
        name: None,
        properties: SubnetProperties {
            address_prefix: Some(parse_cidr(address_prefix)?),
            network_security_group: nsg_id.map(SubResource::new),
            provisioning_state: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> VmSpec {
        VmSpec {
            location: "local".into(),
            computer_name: "et-vm".into(),
            size: "Standard_DS2_v2".into(),
            image: ImageReference {
                publisher: Some("Canonical".into()),
                offer: Some("0001-com-ubuntu-server-jammy".into()),
                sku: Some("22_04-lts".into()),
                version: Some("latest".into()),
            },
            os_disk_size_gb: Some(64),
            os_disk_storage_type: Some("Standard_LRS".into()),
            admin_username: "azureuser".into(),
            ssh_public_key: "ssh-ed25519 AAAA test\n".into(),
            cloud_init: Some("#cloud-config\n".into()),
            nic_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic".into(),
            tags: BTreeMap::from([("edgetrain.dev/owner".into(), "ns/name".into())]),
        }
    }

    #[test]
    fn vm_body_matches_expected_json() {
        let body = serde_json::to_value(vm_body(&spec()).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "location": "local",
                "tags": {"edgetrain.dev/owner": "ns/name"},
                "properties": {
                    "hardwareProfile": {"vmSize": "Standard_DS2_v2"},
                    "storageProfile": {
                        "imageReference": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts", "version": "latest"},
                        "osDisk": {"caching": "ReadWrite", "createOption": "FromImage", "diskSizeGB": 64, "managedDisk": {"storageAccountType": "Standard_LRS"}}
                    },
                    "osProfile": {
                        "computerName": "et-vm",
                        "adminUsername": "azureuser",
                        "customData": "I2Nsb3VkLWNvbmZpZwo=",
                        "linuxConfiguration": {
                            "disablePasswordAuthentication": true,
                            "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA test"}]},
                            "provisionVMAgent": true
                        }
                    },
                    "networkProfile": {"networkInterfaces": [{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic", "properties": {"primary": true}}]}
                }
            })
        );
    }

    #[test]
    fn vm_body_rejects_bad_input() {
        let mut s = spec();
        s.admin_username = String::new();
        assert!(vm_body(&s).is_err());
        let mut s = spec();
        s.cloud_init = Some("x".repeat(70_000));
        assert!(vm_body(&s).is_err());
        let mut s = spec();
        s.computer_name = "n".repeat(65);
        assert!(vm_body(&s).is_err());
    }

    #[test]
    fn nsg_rules_one_per_cidr_with_unique_priorities() {
        let nsg = ssh_nsg_body(
            "local",
            &[
                "10.0.0.0/8".into(),
                " 203.0.113.7 ".into(),
                "10.0.0.0/8".into(),
                "2001:db8::/32".into(),
            ],
            22,
            &BTreeMap::new(),
        )
        .unwrap();
        let v = serde_json::to_value(&nsg).unwrap();
        let rules = v["properties"]["securityRules"].as_array().unwrap();
        assert_eq!(rules.len(), 3, "duplicates collapse");
        assert_eq!(
            rules[1],
            json!({"name": "allow-ssh-1", "properties": {
                "description": "SSH from 203.0.113.7 (edgetrain)", "protocol": "Tcp",
                "sourcePortRange": "*", "destinationPortRange": "22",
                "sourceAddressPrefix": "203.0.113.7", "destinationAddressPrefix": "*",
                "access": "Allow", "priority": 101, "direction": "Inbound"}})
        );
        assert_eq!(rules[2]["properties"]["priority"], 102);
    }

    #[test]
    fn nsg_rejects_bad_cidrs() {
        for bad in ["10.0.0.0/33", "not-an-ip", "10.0.0/8", "::/129", "*"] {
            assert!(
                ssh_nsg_body("local", &[bad.to_string()], 22, &BTreeMap::new()).is_err(),
                "{bad} accepted"
            );
        }
        let empty = ssh_nsg_body("local", &[], 22, &BTreeMap::new()).unwrap();
        assert!(empty.properties.security_rules.is_empty());
    }

    #[test]
    fn network_bodies() {
        let tags = BTreeMap::new();
        let pip =
            serde_json::to_value(public_ip_body("local", Some("etvm"), &tags).unwrap()).unwrap();
        assert_eq!(
            pip,
            json!({"location": "local", "sku": {"name": "Basic"}, "properties": {
                "publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4",
                "dnsSettings": {"domainNameLabel": "etvm"}}})
        );
        let nic = serde_json::to_value(
            nic_body("local", "/sub/snet", Some("/pip"), Some("/nsg"), &tags).unwrap(),
        )
        .unwrap();
        assert_eq!(
            nic,
            json!({"location": "local", "properties": {
                "ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "subnet": {"id": "/sub/snet"}, "privateIPAllocationMethod": "Dynamic",
                    "publicIPAddress": {"id": "/pip"}, "primary": true}}],
                "networkSecurityGroup": {"id": "/nsg"}}})
        );
        let vnet = serde_json::to_value(
            vnet_body(
                "local",
                "10.10.0.0/16",
                "default",
                "10.10.1.0/24",
                None,
                &tags,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            vnet,
            json!({"location": "local", "properties": {
                "addressSpace": {"addressPrefixes": ["10.10.0.0/16"]},
                "subnets": [{"name": "default", "properties": {"addressPrefix": "10.10.1.0/24"}}]}})
        );
        assert!(subnet_body("10.10.1.0/40", None).is_err());
    }
}
