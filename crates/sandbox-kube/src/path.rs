//! Parsing request paths into what they address (pure).

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    /// `/api`: the core API versions.
    CoreVersions,
    /// `/apis`: every group.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`: the resources of one group/version.
    Resources {
        group: String,
        version: String,
    },
    /// `/openapi/v3` and below.
    OpenApiV3(Vec<String>),
    /// `/openapi/v2`.
    OpenApiV2,
    Healthz,
    /// A path under a group/version that names objects.
    Objects {
        group: String,
        version: String,
        rest: Vec<String>,
    },
}

/// Which objects a resource path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse(path: &str) -> Option<Route> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    Some(match s.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] | ["readyz"] | ["livez"] => Route::Healthz,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group((*g).to_string()),
        ["api", v] => Route::Resources {
            group: String::new(),
            version: (*v).to_string(),
        },
        ["apis", g, v] => Route::Resources {
            group: (*g).to_string(),
            version: (*v).to_string(),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3", rest @ ..] => {
            Route::OpenApiV3(rest.iter().map(|x| x.to_string()).collect())
        }
        ["api", v, rest @ ..] => Route::Objects {
            group: String::new(),
            version: (*v).to_string(),
            rest: rest.iter().map(|x| x.to_string()).collect(),
        },
        ["apis", g, v, rest @ ..] => Route::Objects {
            group: (*g).to_string(),
            version: (*v).to_string(),
            rest: rest.iter().map(|x| x.to_string()).collect(),
        },
        _ => return None,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits the part after the group/version; `is_namespaced(plural)` tells whether
/// `namespaces/{ns}/{plural}` names a namespaced resource or a Namespace subresource.
pub fn target(rest: &[String], is_namespaced: impl Fn(&str) -> bool) -> Option<Target> {
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    let t = |plural: &str, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        plural: plural.to_string(),
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    };
    Some(match r.as_slice() {
        ["namespaces", ns, plural, tail @ ..] if is_namespaced(plural) => match tail {
            [] => t(plural, Some(ns), None, None),
            [name] => t(plural, Some(ns), Some(name), None),
            [name, sub] => t(plural, Some(ns), Some(name), Some(sub)),
            _ => return None,
        },
        [plural] => t(plural, None, None, None),
        [plural, name] => t(plural, None, Some(name), None),
        [plural, name, sub] => t(plural, None, Some(name), Some(sub)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(p: &str) -> Vec<String> {
        match parse(p).unwrap() {
            Route::Objects { rest, .. } => rest,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse("/api"), Some(Route::CoreVersions));
        assert_eq!(
            parse("/apis/example.com/v1"),
            Some(Route::Resources {
                group: "example.com".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/nope"), None);
    }

    #[test]
    fn namespaced_versus_namespace_subresource() {
        let ns = |p: &str| p == "configmaps";
        let t = target(&rest("/api/v1/namespaces/default/configmaps/a"), ns).unwrap();
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("a"));
        let t = target(&rest("/api/v1/namespaces/default/status"), ns).unwrap();
        assert_eq!(t.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("default"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = target(&rest("/apis/example.com/v1/widgets"), ns).unwrap();
        assert_eq!(t.namespace, None);
    }

    #[test]
    fn percent_decoding_of_segments() {
        assert_eq!(percent_decode("a%3Ab"), "a:b");
        assert_eq!(percent_decode("abc%"), "abc%");
    }
}
