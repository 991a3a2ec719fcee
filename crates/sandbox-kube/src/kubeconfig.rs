//! The kubeconfig the sandbox writes: plain HTTP on loopback, no credentials (or a bearer
//! token that only names the user in the audit log).

/// A kubeconfig with one context, `edgetrain-sandbox`, namespace `default`.
pub fn render(server: &str) -> String {
    render_as(server, None)
}

/// [`render`], with `user` sent as the bearer token when given.
pub fn render_as(server: &str, user: Option<&str>) -> String {
    let user = user.map_or_else(|| "{}".to_string(), |u| format!("{{token: {u:?}}}"));
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: edgetrain-sandbox
  cluster:
    server: {server}
users:
- name: edgetrain-sandbox
  user: {user}
contexts:
- name: edgetrain-sandbox
  context:
    cluster: edgetrain-sandbox
    user: edgetrain-sandbox
    namespace: default
current-context: edgetrain-sandbox
"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn kubeconfig_parses_and_points_at_the_server() {
        let text = super::render("http://127.0.0.1:1234");
        let kc: kube::config::Kubeconfig = serde_yaml::from_str(&text).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("edgetrain-sandbox"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:1234"));
        let text = super::render_as("http://127.0.0.1:1234", Some("replica-a"));
        let kc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(kc["users"][0]["user"]["token"].as_str(), Some("replica-a"));
    }
}
