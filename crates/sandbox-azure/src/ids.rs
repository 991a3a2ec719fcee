//! ARM resource ids: parsing a request path into subscription, provider and type chain.

/// The parts of an ARM path `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmPath {
    pub subscription: String,
    pub resource_group: Option<String>,
    pub namespace: Option<String>,
    /// Alternating type/name segments after the namespace (last may be a type or an action).
    pub segments: Vec<String>,
}

impl ArmPath {
    pub fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        if parts.len() < 2 || !parts[0].eq_ignore_ascii_case("subscriptions") {
            return None;
        }
        let subscription = parts[1].to_owned();
        let mut i = 2;
        let mut resource_group = None;
        if parts.len() >= i + 2 && parts[i].eq_ignore_ascii_case("resourceGroups") {
            resource_group = Some(parts[i + 1].to_owned());
            i += 2;
        }
        let mut namespace = None;
        let mut segments = Vec::new();
        if parts.len() >= i + 2 && parts[i].eq_ignore_ascii_case("providers") {
            namespace = Some(parts[i + 1].to_owned());
            segments = parts[i + 2..].iter().map(|s| (*s).to_owned()).collect();
        } else if parts.len() > i {
            return None;
        }
        Some(Self {
            subscription,
            resource_group,
            namespace,
            segments,
        })
    }

    /// `Namespace/type1/type2` of the resource this path names or lists.
    pub fn resource_type(&self) -> String {
        let mut out = self.namespace.clone().unwrap_or_default();
        for ty in self.segments.iter().step_by(2) {
            out.push('/');
            out.push_str(ty);
        }
        out
    }
}

/// The ARM id of the parent resource (`None` for a top-level resource under a provider).
pub fn parent_id(id: &str) -> Option<String> {
    let parsed = ArmPath::parse(id)?;
    if parsed.segments.len() < 4 {
        return None;
    }
    let mut parts: Vec<&str> = id.trim_end_matches('/').split('/').collect();
    parts.truncate(parts.len() - 2);
    Some(parts.join("/"))
}

/// The key used to store a resource: ARM ids are case-insensitive.
pub fn key(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase()
}

/// Last segment of an id.
pub fn name_of(id: &str) -> &str {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_ids() {
        let p = ArmPath::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a",
        )
        .unwrap();
        assert_eq!(p.subscription, "s");
        assert_eq!(p.resource_group.as_deref(), Some("rg"));
        assert_eq!(
            p.resource_type(),
            "Microsoft.Network/virtualNetworks/subnets"
        );
        assert_eq!(
            parent_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a")
                .as_deref(),
            Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v")
        );
        assert_eq!(
            parent_id(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"
            ),
            None
        );
        assert!(ArmPath::parse("/oauth2/token").is_none());
        assert_eq!(key("/Subscriptions/S/"), "/subscriptions/s");
    }
}
