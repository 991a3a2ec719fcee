//! Microsoft.Network: NICs (private IPs from the subnet's CIDR), public IPs (the configured
//! address, 127.0.0.1 by default), NSGs, virtual networks and subnets.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::{
    arm::{Prepared, Req},
    arm_error::ArmError,
    ids,
    state::{Resource, State},
};

/// Parse `a.b.c.d/n`.
pub fn parse_cidr(cidr: &str) -> Option<(u32, u8)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((u32::from(addr), len))
}

/// First free host address of a subnet; Azure reserves the first four and the last.
pub fn allocate_ip(cidr: &str, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let (base, len) = parse_cidr(cidr)?;
    if len > 29 {
        return None;
    }
    let size = 1u64 << (32 - len);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let network = base & mask;
    (4..size - 1)
        .map(|i| Ipv4Addr::from(network + i as u32))
        .find(|ip| !used.contains(ip))
}

fn etag() -> Value {
    Value::String(format!("W/\"{}\"", uuid::Uuid::new_v4()))
}

/// Types whose `properties.resourceGuid` the service assigns (2018-11-01 schemas).
const RESOURCE_GUID_TYPES: &[&str] = &[
    "microsoft.network/networkinterfaces",
    "microsoft.network/publicipaddresses",
    "microsoft.network/networksecuritygroups",
    "microsoft.network/virtualnetworks",
];

/// What the service adds to a security rule, inline or as a child resource.
fn decorate_rule(rule: &mut Value, id: &str) {
    rule["id"] = Value::String(id.to_owned());
    rule["etag"] = etag();
    rule["properties"]["provisioningState"] = json!("Succeeded");
    for list in [
        "sourcePortRanges",
        "destinationPortRanges",
        "sourceAddressPrefixes",
        "destinationAddressPrefixes",
    ] {
        if rule["properties"][list].is_null() {
            rule["properties"][list] = json!([]);
        }
    }
}

/// The six rules every NSG has (lowest precedence), as the service lists them.
fn default_security_rules(nsg_id: &str) -> Vec<Value> {
    const DEFAULTS: [(&str, &str, &str, &str, &str, u32, &str); 6] = [
        (
            "AllowVnetInBound",
            "Allow inbound traffic from all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow",
            65000,
            "Inbound",
        ),
        (
            "AllowAzureLoadBalancerInBound",
            "Allow inbound traffic from azure load balancer",
            "AzureLoadBalancer",
            "*",
            "Allow",
            65001,
            "Inbound",
        ),
        (
            "DenyAllInBound",
            "Deny all inbound traffic",
            "*",
            "*",
            "Deny",
            65500,
            "Inbound",
        ),
        (
            "AllowVnetOutBound",
            "Allow outbound traffic from all VMs to all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow",
            65000,
            "Outbound",
        ),
        (
            "AllowInternetOutBound",
            "Allow outbound traffic from all VMs to Internet",
            "*",
            "Internet",
            "Allow",
            65001,
            "Outbound",
        ),
        (
            "DenyAllOutBound",
            "Deny all outbound traffic",
            "*",
            "*",
            "Deny",
            65500,
            "Outbound",
        ),
    ];
    DEFAULTS
        .iter()
        .map(
            |(name, description, source, destination, access, priority, direction)| {
                let mut rule = json!({
                    "name": name,
                    "properties": {
                        "description": description,
                        "protocol": "*",
                        "sourcePortRange": "*",
                        "destinationPortRange": "*",
                        "sourceAddressPrefix": source,
                        "destinationAddressPrefix": destination,
                        "access": access,
                        "priority": priority,
                        "direction": direction,
                    },
                });
                decorate_rule(&mut rule, &format!("{nsg_id}/defaultSecurityRules/{name}"));
                rule
            },
        )
        .collect()
}

/// Read-only children the service computes rather than stores: an NSG's default rules.
/// `None` when `child_type` under `parent` is not such a collection.
pub fn computed_children(parent: &str, child_type: &str) -> Option<Vec<Value>> {
    let parent_type = ids::ArmPath::parse(parent)?.resource_type();
    (parent_type.eq_ignore_ascii_case("Microsoft.Network/networkSecurityGroups")
        && child_type.eq_ignore_ascii_case("defaultSecurityRules"))
    .then(|| default_security_rules(parent))
}

/// A child resource as its parent lists it: the 2018-11-01 schemas of inline subnets and
/// rules have no `type`, so a client that PUTs back what it read must not find one.
pub fn inline(child: &Value) -> Value {
    let mut body = child.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("type");
    }
    body
}

/// GET of an NSG: its rules (child resources), the defaults, and who references it.
pub fn render_nsg(st: &State, res: &Resource, body: &mut Value) {
    let rules: Vec<Value> = st
        .children(&res.id, "securityRules")
        .into_iter()
        .map(|r| inline(&r.body))
        .collect();
    body["properties"]["securityRules"] = Value::Array(rules);
    body["properties"]["defaultSecurityRules"] = Value::Array(default_security_rules(&res.id));
    let key = ids::key(&res.id);
    let referencing = |ty: &str| -> Vec<Value> {
        let mut found: Vec<&Resource> = st
            .all()
            .filter(|r| {
                ids::ArmPath::parse(&r.id)
                    .is_some_and(|p| p.resource_type().eq_ignore_ascii_case(ty))
                    && r.body
                        .pointer("/properties/networkSecurityGroup/id")
                        .and_then(Value::as_str)
                        .is_some_and(|n| ids::key(n) == key)
            })
            .collect();
        found.sort_by_key(|r| r.seq);
        found.iter().map(|r| json!({ "id": r.id })).collect()
    };
    for (field, ty) in [
        ("networkInterfaces", "Microsoft.Network/networkInterfaces"),
        ("subnets", "Microsoft.Network/virtualNetworks/subnets"),
    ] {
        let refs = referencing(ty);
        if !refs.is_empty() {
            body["properties"][field] = Value::Array(refs);
        }
    }
}

fn reference_error(id: &str, owner: &str, target: String) -> ArmError {
    ArmError::bad_request(
        "InvalidResourceReference",
        format!("Resource {id} referenced by resource {owner} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."),
    )
    .with_target(target)
}

pub fn prepare(
    req: &Req<'_>,
    st: &State,
    ty: &str,
    existing: Option<&Resource>,
    body: &mut Value,
) -> Result<Prepared, ArmError> {
    body["etag"] = etag();
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    if RESOURCE_GUID_TYPES.contains(&ty) {
        // Server-owned, stable across updates.
        body["properties"]["resourceGuid"] = existing
            .and_then(|e| e.body.pointer("/properties/resourceGuid").cloned())
            .unwrap_or_else(|| Value::String(uuid::Uuid::new_v4().to_string()));
    }
    match ty {
        "microsoft.network/networkinterfaces" => prepare_nic(st, &id, existing, body)?,
        "microsoft.network/publicipaddresses" => {
            body["properties"]["ipAddress"] = Value::String(req.sh.config.public_ip.to_string());
            // The defaults Azure fills in when the request leaves them out.
            let defaults = [
                ("publicIPAddressVersion", json!("IPv4")),
                ("publicIPAllocationMethod", json!("Dynamic")),
                ("idleTimeoutInMinutes", json!(4)),
            ];
            for (field, value) in defaults {
                if body["properties"][field].is_null() {
                    body["properties"][field] = value;
                }
            }
            if let Some(prev) = existing.and_then(|e| e.body["properties"].get("ipConfiguration")) {
                body["properties"]["ipConfiguration"] = prev.clone();
            }
        }
        "microsoft.network/networksecuritygroups" => {
            // Computed on GET (`render_nsg`); a client sending back what it read must not
            // store them.
            if let Some(props) = body
                .pointer_mut("/properties")
                .and_then(Value::as_object_mut)
            {
                for computed in ["defaultSecurityRules", "networkInterfaces", "subnets"] {
                    props.remove(computed);
                }
            }
            if let Some(rules) = body
                .pointer_mut("/properties/securityRules")
                .and_then(Value::as_array_mut)
            {
                for rule in rules {
                    let name = rule["name"].as_str().unwrap_or_default().to_owned();
                    decorate_rule(rule, &format!("{id}/securityRules/{name}"));
                }
            }
        }
        "microsoft.network/networksecuritygroups/securityrules" => {
            decorate_rule(body, &id);
        }
        "microsoft.network/virtualnetworks/subnets" => {
            if let Some(prev) = existing.and_then(|e| e.body["properties"].get("ipConfigurations"))
            {
                body["properties"]["ipConfigurations"] = prev.clone();
            }
        }
        "microsoft.network/virtualnetworks" => {
            if let Some(subnets) = body["properties"]["subnets"].as_array() {
                let keep: Vec<String> = subnets
                    .iter()
                    .filter_map(|s| s["name"].as_str().map(|n| format!("{id}/subnets/{n}")))
                    .collect();
                for old in st.children(&id, "subnets") {
                    let in_use = old.body["properties"]["ipConfigurations"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty());
                    if in_use && !keep.iter().any(|k| ids::key(k) == ids::key(&old.id)) {
                        return Err(ArmError::bad_request(
                            "InUseSubnetCannotBeDeleted",
                            format!(
                                "Subnet {} is in use and cannot be deleted.",
                                ids::name_of(&old.id)
                            ),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(Prepared::default())
}

fn prepare_nic(
    st: &State,
    id: &str,
    existing: Option<&Resource>,
    body: &mut Value,
) -> Result<(), ArmError> {
    if let Some(nsg) = body["properties"]["networkSecurityGroup"]["id"].as_str()
        && st.get(nsg).is_none()
    {
        return Err(reference_error(
            nsg,
            id,
            "properties.networkSecurityGroup.id".into(),
        ));
    }
    let previous: Vec<Value> = existing
        .and_then(|e| e.body["properties"]["ipConfigurations"].as_array().cloned())
        .unwrap_or_default();
    let used = used_private_ips(st, id);
    body["properties"]["macAddress"] = existing
        .and_then(|e| e.body.pointer("/properties/macAddress").cloned())
        .unwrap_or_else(|| Value::String(mac_address()));
    if let Some(vm) = existing.and_then(|e| e.body["properties"].get("virtualMachine")) {
        body["properties"]["virtualMachine"] = vm.clone();
    }
    if let Some(primary) = existing.and_then(|e| e.body["properties"].get("primary")) {
        body["properties"]["primary"] = primary.clone();
    }
    let Some(configs) = body
        .pointer_mut("/properties/ipConfigurations")
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    // One configuration is the primary one; Azure picks the first when none is marked.
    if !configs
        .iter()
        .any(|c| c.pointer("/properties/primary") == Some(&json!(true)))
        && let Some(first) = configs.first_mut()
    {
        first["properties"]["primary"] = json!(true);
    }
    for (i, cfg) in configs.iter_mut().enumerate() {
        let name = cfg["name"].as_str().unwrap_or("ipconfig1").to_owned();
        cfg["id"] = Value::String(format!("{id}/ipConfigurations/{name}"));
        cfg["etag"] = etag();
        let props = &mut cfg["properties"];
        props["provisioningState"] = json!("Succeeded");
        let target = |field: &str| format!("properties.ipConfigurations[{i}].properties.{field}");
        if let Some(pip) = props["publicIPAddress"]["id"].as_str()
            && st.get(pip).is_none()
        {
            return Err(reference_error(pip, id, target("publicIPAddress.id")));
        }
        let Some(subnet_id) = props["subnet"]["id"].as_str().map(str::to_owned) else {
            continue;
        };
        let Some(subnet) = st.get(&subnet_id) else {
            return Err(reference_error(&subnet_id, id, target("subnet.id")));
        };
        let dynamic = props["privateIPAllocationMethod"].as_str() != Some("Static");
        if dynamic {
            let kept = previous
                .iter()
                .find(|p| p["name"].as_str() == Some(name.as_str()))
                .and_then(|p| p["properties"]["privateIPAddress"].as_str())
                .map(str::to_owned);
            let ip = match kept {
                Some(ip) => ip,
                None => {
                    let cidr = subnet.body["properties"]["addressPrefix"]
                        .as_str()
                        .unwrap_or_default();
                    allocate_ip(cidr, &used)
                        .ok_or_else(|| {
                            ArmError::bad_request(
                                "SubnetIsFull",
                                format!("Subnet {subnet_id} with address prefix '{cidr}' has no free addresses."),
                            )
                        })?
                        .to_string()
                }
            };
            props["privateIPAddress"] = Value::String(ip);
            props["privateIPAllocationMethod"] = json!("Dynamic");
        }
        if props["privateIPAddressVersion"].is_null() {
            props["privateIPAddressVersion"] = json!("IPv4");
        }
        if props["primary"].is_null() {
            props["primary"] = json!(false);
        }
    }
    Ok(())
}

/// A MAC address in Azure's notation (`00-0D-3A-..`, Microsoft's prefix, upper-case, dashes).
fn mac_address() -> String {
    let random = uuid::Uuid::new_v4();
    let tail = &random.as_bytes()[..3];
    format!("00-0D-3A-{:02X}-{:02X}-{:02X}", tail[0], tail[1], tail[2])
}

fn used_private_ips(st: &State, except_nic: &str) -> Vec<Ipv4Addr> {
    st.all()
        .filter(|r| ids::key(&r.id) != ids::key(except_nic))
        .filter_map(|r| r.body["properties"]["ipConfigurations"].as_array())
        .flatten()
        .filter_map(|c| c["properties"]["privateIPAddress"].as_str()?.parse().ok())
        .collect()
}

/// Keep the back-references ARM shows: subnet → ipConfigurations, public IP → ipConfiguration;
/// create the child subnets a vnet PUT carries inline.
pub fn after_put(st: &mut State, ty: &str, id: &str) {
    match ty {
        "microsoft.network/virtualnetworks" => {
            let Some(vnet) = st.get(id).cloned() else {
                return;
            };
            let Some(subnets) = vnet.body["properties"]["subnets"].as_array() else {
                return;
            };
            let mut keep = Vec::new();
            for subnet in subnets {
                let Some(name) = subnet["name"].as_str() else {
                    continue;
                };
                let sid = format!("{}/subnets/{name}", vnet.id);
                let previous = st
                    .get(&sid)
                    .map(|s| s.body["properties"]["ipConfigurations"].clone());
                let mut body = subnet.clone();
                body["id"] = Value::String(sid.clone());
                body["etag"] = etag();
                body["type"] = json!("Microsoft.Network/virtualNetworks/subnets");
                body["properties"]["provisioningState"] = json!("Succeeded");
                if let Some(prev) = previous.filter(|p| !p.is_null()) {
                    body["properties"]["ipConfigurations"] = prev;
                }
                st.put(&sid, body);
                keep.push(ids::key(&sid));
            }
            let stale: Vec<String> = st
                .children(&vnet.id, "subnets")
                .into_iter()
                .filter(|s| !keep.contains(&ids::key(&s.id)))
                .map(|s| s.id.clone())
                .collect();
            for sid in stale {
                st.remove(&sid);
            }
            if let Some(stored) = st.get_mut(id)
                && let Some(props) = stored.body["properties"].as_object_mut()
            {
                // Subnets live as child resources; GET assembles them.
                props.remove("subnets");
            }
        }
        "microsoft.network/networksecuritygroups" => store_inline_rules(st, id),
        "microsoft.network/networkinterfaces" => {
            let Some(nic) = st.get(id).cloned() else {
                return;
            };
            for cfg in nic.body["properties"]["ipConfigurations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let cfg_ref = json!({ "id": cfg["id"] });
                if let Some(subnet_id) = cfg["properties"]["subnet"]["id"].as_str()
                    && let Some(subnet) = st.get_mut(subnet_id)
                {
                    let list = &mut subnet.body["properties"]["ipConfigurations"];
                    if !list.is_array() {
                        *list = json!([]);
                    }
                    if let Some(items) = list.as_array_mut()
                        && !items.contains(&cfg_ref)
                    {
                        items.push(cfg_ref.clone());
                    }
                }
                if let Some(pip_id) = cfg["properties"]["publicIPAddress"]["id"].as_str()
                    && let Some(pip) = st.get_mut(pip_id)
                {
                    pip.body["properties"]["ipConfiguration"] = cfg_ref.clone();
                }
            }
        }
        _ => {}
    }
}

/// An NSG PUT replaces its rule set: the inline `securityRules` become the child resources
/// `.../securityRules/{name}` (absent = none, as in Azure), which GET assembles again.
fn store_inline_rules(st: &mut State, nsg_id: &str) {
    let Some(nsg) = st.get(nsg_id).cloned() else {
        return;
    };
    let rules = nsg
        .body
        .pointer("/properties/securityRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut keep = Vec::new();
    for rule in rules {
        let Some(rule_id) = rule["id"].as_str().map(str::to_owned) else {
            continue;
        };
        keep.push(ids::key(&rule_id));
        st.put(&rule_id, rule);
    }
    let stale: Vec<String> = st
        .children(&nsg.id, "securityRules")
        .into_iter()
        .filter(|r| !keep.contains(&ids::key(&r.id)))
        .map(|r| r.id.clone())
        .collect();
    for rule_id in stale {
        st.remove(&rule_id);
    }
    if let Some(props) = st
        .get_mut(nsg_id)
        .and_then(|n| n.body.pointer_mut("/properties"))
        .and_then(Value::as_object_mut)
    {
        props.remove("securityRules");
    }
}

/// Refuse to delete what is still in use, like ARM does.
pub fn before_delete(st: &mut State, ty: &str, res: &Resource) -> Result<(), ArmError> {
    match ty {
        "microsoft.network/networkinterfaces" => {
            if let Some(vm) = res.body["properties"]["virtualMachine"]["id"].as_str() {
                return Err(ArmError::bad_request(
                    "NicInUse",
                    format!(
                        "Network Interface {} is used by existing resource {vm}. In order to delete the network interface, it must be dissociated from the resource.",
                        res.id
                    ),
                ));
            }
            let cfg_ids: Vec<Value> = res.body["properties"]["ipConfigurations"]
                .as_array()
                .map(|a| a.iter().map(|c| json!({"id": c["id"]})).collect())
                .unwrap_or_default();
            // Only the back-references: indexing with `[]` here would insert `null` members
            // into every stored resource.
            for r in st.all_mut() {
                let Some(props) = r
                    .body
                    .pointer_mut("/properties")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                if let Some(list) = props
                    .get_mut("ipConfigurations")
                    .and_then(Value::as_array_mut)
                {
                    list.retain(|c| !cfg_ids.contains(c));
                }
                if props
                    .get("ipConfiguration")
                    .is_some_and(|c| cfg_ids.contains(c))
                {
                    props.remove("ipConfiguration");
                }
            }
            Ok(())
        }
        "microsoft.network/virtualnetworks/subnets" | "microsoft.network/publicipaddresses" => {
            let in_use = res.body["properties"]["ipConfigurations"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                || res.body["properties"]["ipConfiguration"].is_object();
            if in_use {
                let code = if ty.ends_with("subnets") {
                    "InUseSubnetCannotBeDeleted"
                } else {
                    "PublicIPAddressInUse"
                };
                return Err(ArmError::bad_request(
                    code,
                    format!(
                        "{} is in use by a network interface and cannot be deleted.",
                        res.id
                    ),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_from_the_fourth_host() {
        assert_eq!(
            allocate_ip("10.0.1.0/24", &[]),
            Some(Ipv4Addr::new(10, 0, 1, 4))
        );
        assert_eq!(
            allocate_ip("10.0.1.0/24", &[Ipv4Addr::new(10, 0, 1, 4)]),
            Some(Ipv4Addr::new(10, 0, 1, 5))
        );
        assert_eq!(allocate_ip("10.0.1.7/30", &[]), None);
        assert_eq!(allocate_ip("bogus", &[]), None);
        // /29: .4 .5 .6 usable, .7 broadcast.
        let used = [4, 5, 6].map(|i| Ipv4Addr::new(10, 0, 0, i));
        assert_eq!(allocate_ip("10.0.0.0/29", &used), None);
    }

    #[test]
    fn default_rules_are_the_six_of_every_nsg() {
        let nsg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n";
        let rules = computed_children(nsg, "defaultsecurityrules").unwrap();
        assert_eq!(rules.len(), 6);
        assert_eq!(
            rules[2]["id"],
            format!("{nsg}/defaultSecurityRules/DenyAllInBound")
        );
        assert_eq!(rules[2]["properties"]["priority"], 65500);
        assert_eq!(rules[5]["properties"]["direction"], "Outbound");
        assert!(computed_children(nsg, "securityRules").is_none());
        let vnet =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v";
        assert!(computed_children(vnet, "defaultSecurityRules").is_none());
    }

    #[test]
    fn mac_addresses_look_like_azure_ones_and_differ() {
        let re = regex::Regex::new("^00-0D-3A(-[0-9A-F]{2}){3}$").unwrap();
        let (a, b) = (mac_address(), mac_address());
        assert!(re.is_match(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn inline_children_lose_their_type_only() {
        let child = json!({"id": "x", "type": "Microsoft.Network/virtualNetworks/subnets", "properties": {"type": "kept"}});
        assert_eq!(
            inline(&child),
            json!({"id": "x", "properties": {"type": "kept"}})
        );
    }
}
