"""azure-mgmt-network / azure-mgmt-compute (2020-09-01-hybrid profile) against the simulated
Stack Hub: create-update-delete through the SDKs' own pollers, gets, lists, instance views."""

import json
import re

import pytest
from azure.core.exceptions import ResourceNotFoundError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RG = "sdk-stack-hub"
LOCATION = "local"


def raw_json(pipeline_response, _deserialized, _headers):
    """`cls=` hook: the answer's JSON as sent, to see members the models would drop."""
    return json.loads(pipeline_response.http_response.text())


def nulls(value, path=""):
    """Paths of every JSON null (Azure leaves absent members out instead)."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nulls(v, f"{path}[{i}]")]
    return []


def ssh_public_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture(scope="module")
def network(network_client):
    """vnet + subnet, NSG with an inline rule, public IP, NIC: the VM's network."""
    vnet = network_client.virtual_networks.begin_create_or_update(
        RG,
        "vnet1",
        {
            "location": LOCATION,
            "address_space": {"address_prefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "default", "address_prefix": "10.0.0.0/24"}],
        },
    ).result()
    nsg = network_client.network_security_groups.begin_create_or_update(
        RG,
        "nsg1",
        {
            "location": LOCATION,
            "security_rules": [
                {
                    "name": "ssh",
                    "protocol": "Tcp",
                    "source_port_range": "*",
                    "destination_port_range": "22",
                    "source_address_prefix": "*",
                    "destination_address_prefix": "*",
                    "access": "Allow",
                    "priority": 1000,
                    "direction": "Inbound",
                }
            ],
        },
    ).result()
    pip = network_client.public_ip_addresses.begin_create_or_update(
        RG, "pip1", {"location": LOCATION, "public_ip_allocation_method": "Static"}
    ).result()
    nic = network_client.network_interfaces.begin_create_or_update(
        RG,
        "nic1",
        {
            "location": LOCATION,
            "network_security_group": {"id": nsg.id},
            "ip_configurations": [
                {
                    "name": "ipconfig1",
                    "subnet": {"id": vnet.subnets[0].id},
                    "public_ip_address": {"id": pip.id},
                }
            ],
        },
    ).result()
    return {"vnet": vnet, "nsg": nsg, "pip": pip, "nic": nic}


def test_network_resources_read_back_as_azure_sends_them(network, network_client):
    vnet, pip, nic = network["vnet"], network["pip"], network["nic"]
    assert vnet.provisioning_state == "Succeeded"
    assert [s.name for s in vnet.subnets] == ["default"]
    assert vnet.resource_guid
    assert pip.provisioning_state == "Succeeded"
    assert pip.ip_address == "127.0.0.1"
    assert pip.idle_timeout_in_minutes == 4
    assert pip.resource_guid
    assert re.fullmatch(r"([0-9A-F]{2}-){5}[0-9A-F]{2}", nic.mac_address), nic.mac_address
    assert nic.resource_guid
    config = nic.ip_configurations[0]
    assert config.primary is True
    assert config.private_ip_address == "10.0.0.4"
    assert config.public_ip_address.id.lower() == pip.id.lower()
    assert [n.name for n in network_client.network_interfaces.list(RG)] == ["nic1"]
    subnet = network_client.subnets.get(RG, "vnet1", "default")
    assert [c.id.lower() for c in subnet.ip_configurations] == [config.id.lower()]


def test_nsg_rules_are_child_resources_with_defaults(network, network_client):
    nsg = network_client.network_security_groups.get(RG, "nsg1")
    assert nsg.resource_guid
    assert [r.name for r in nsg.security_rules] == ["ssh"]
    assert {r.name for r in nsg.default_security_rules} == {
        "AllowVnetInBound",
        "AllowAzureLoadBalancerInBound",
        "DenyAllInBound",
        "AllowVnetOutBound",
        "AllowInternetOutBound",
        "DenyAllOutBound",
    }
    assert [n.id.lower() for n in nsg.network_interfaces] == [network["nic"].id.lower()]

    rule = network_client.security_rules.get(RG, "nsg1", "ssh")
    assert (rule.destination_port_range, rule.priority, rule.access) == ("22", 1000, "Allow")
    https = network_client.security_rules.begin_create_or_update(
        RG,
        "nsg1",
        "https",
        {
            "protocol": "Tcp",
            "source_port_range": "*",
            "destination_port_range": "443",
            "source_address_prefix": "*",
            "destination_address_prefix": "*",
            "access": "Allow",
            "priority": 1010,
            "direction": "Inbound",
        },
    ).result()
    assert https.provisioning_state == "Succeeded"
    assert sorted(r.name for r in network_client.security_rules.list(RG, "nsg1")) == ["https", "ssh"]
    deny = network_client.default_security_rules.get(RG, "nsg1", "DenyAllInBound")
    assert (deny.access, deny.priority, deny.direction) == ("Deny", 65500, "Inbound")
    assert len(list(network_client.default_security_rules.list(RG, "nsg1"))) == 6

    network_client.security_rules.begin_delete(RG, "nsg1", "https").result()
    with pytest.raises(ResourceNotFoundError):
        network_client.security_rules.get(RG, "nsg1", "https")


def test_vm_lifecycle_through_pollers(network, network_client, compute_client):
    vms = compute_client.virtual_machines
    vm = vms.begin_create_or_update(
        RG,
        "vm1",
        {
            "location": LOCATION,
            "hardware_profile": {"vm_size": "Standard_DS2_v2"},
            "storage_profile": {
                "image_reference": {
                    "publisher": "Canonical",
                    "offer": "0001-com-ubuntu-server-jammy",
                    "sku": "22_04-lts",
                    "version": "latest",
                },
                "os_disk": {"create_option": "FromImage", "managed_disk": {"storage_account_type": "Standard_LRS"}},
            },
            "os_profile": {
                "computer_name": "vm1",
                "admin_username": "azureuser",
                "linux_configuration": {
                    "disable_password_authentication": True,
                    "ssh": {
                        "public_keys": [
                            {"path": "/home/azureuser/.ssh/authorized_keys", "key_data": ssh_public_key()}
                        ]
                    },
                },
            },
            "network_profile": {"network_interfaces": [{"id": network["nic"].id, "primary": True}]},
        },
    ).result()
    assert vm.provisioning_state == "Succeeded"
    assert vm.vm_id
    os_disk = vm.storage_profile.os_disk
    assert os_disk.os_type == "Linux"
    assert os_disk.name
    assert os_disk.managed_disk.id.lower().endswith(f"/providers/microsoft.compute/disks/{os_disk.name.lower()}")

    view = vms.instance_view(RG, "vm1")
    codes = [s.code for s in view.statuses]
    assert "ProvisioningState/succeeded" in codes and "PowerState/running" in codes, codes
    assert view.vm_agent.statuses[0].display_status == "Ready"
    assert [d.name for d in view.disks] == [os_disk.name]
    expanded = vms.get(RG, "vm1", expand="instanceView")
    assert expanded.instance_view.statuses[-1].code == "PowerState/running"

    assert [v.name for v in vms.list(RG)] == ["vm1"]
    assert "vm1" in [v.name for v in vms.list_all()]
    sizes = list(vms.list_available_sizes(RG, "vm1"))
    assert "Standard_DS2_v2" in [s.name for s in sizes]
    assert all(s.number_of_cores for s in sizes)
    assert list(compute_client.virtual_machine_sizes.list(LOCATION))

    nic = network_client.network_interfaces.get(RG, "nic1")
    assert nic.virtual_machine.id.lower() == vm.id.lower()
    assert nic.primary is True

    updated = vms.begin_update(RG, "vm1", {"tags": {"purpose": "sdk-contract"}}).result()
    assert updated.tags == {"purpose": "sdk-contract"}
    vms.begin_power_off(RG, "vm1").result()
    assert "PowerState/stopped" in [s.code for s in vms.instance_view(RG, "vm1").statuses]
    vms.begin_start(RG, "vm1").result()
    assert "PowerState/running" in [s.code for s in vms.instance_view(RG, "vm1").statuses]

    # A second NIC comes and goes; nothing else may change (deleting a NIC once wrote
    # `"ipConfigurations": null` into every stored resource).
    spare = network_client.network_interfaces.begin_create_or_update(
        RG,
        "nic-spare",
        {"location": LOCATION, "ip_configurations": [{"name": "c", "subnet": {"id": network["vnet"].subnets[0].id}}]},
    ).result()
    assert spare.ip_configurations[0].private_ip_address == "10.0.0.5"
    network_client.network_interfaces.begin_delete(RG, "nic-spare").result()
    for answer in (
        vms.get(RG, "vm1", cls=raw_json),
        network_client.network_security_groups.get(RG, "nsg1", cls=raw_json),
        network_client.public_ip_addresses.get(RG, "pip1", cls=raw_json),
    ):
        assert nulls(answer) == [], answer

    vms.begin_delete(RG, "vm1").result()
    with pytest.raises(ResourceNotFoundError):
        vms.get(RG, "vm1")
    for delete in (
        lambda: network_client.network_interfaces.begin_delete(RG, "nic1"),
        lambda: network_client.public_ip_addresses.begin_delete(RG, "pip1"),
        lambda: network_client.network_security_groups.begin_delete(RG, "nsg1"),
        lambda: network_client.virtual_networks.begin_delete(RG, "vnet1"),
    ):
        delete().result()
    assert list(network_client.network_interfaces.list(RG)) == []
    assert list(network_client.virtual_networks.list(RG)) == []
