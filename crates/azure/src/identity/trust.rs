//! Where credentials may go. A client secret is only ever posted to a login endpoint the operator
//! trusts, and bearer tokens only to an ARM endpoint it trusts: https everywhere (plain http on
//! loopback only, for local proxies and the sandbox), optionally narrowed to allow-lists of
//! origins, because an ARM endpoint's metadata *names* the login endpoint and whoever controls
//! the ARM endpoint would otherwise choose where our secrets go.

use url::{Host, Origin, Url};

use crate::{Error, Result, error::parse_url};

/// True for `127.0.0.0/8`, `::1` and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Secrets travel over https only; plain http is accepted on loopback, where nothing crosses a
/// network.
pub fn require_secure(what: &str, url: &Url) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        _ => Err(untrusted(
            what,
            url,
            "credentials are only sent over https (plain http only to a loopback address)",
        )),
    }
}

fn untrusted(what: &str, url: &Url, reason: &str) -> Error {
    Error::UntrustedEndpoint {
        what: what.to_string(),
        url: origin_text(url),
        reason: reason.to_string(),
    }
}

/// Scheme, host and port only: paths and queries of a rejected URL stay out of errors.
fn origin_text(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Which ARM endpoints and login authorities may receive credentials. Empty lists allow any
/// endpoint that passes [`require_secure`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    arm_endpoints: Vec<Origin>,
    authorities: Vec<Origin>,
}

impl EndpointPolicy {
    /// Allow-lists of origins (`https://host[:port]`, or `http://` on loopback); a path other
    /// than `/`, a query or a fragment is refused so that an entry cannot look narrower than it
    /// is.
    pub fn new<A: AsRef<str>, B: AsRef<str>>(
        arm_endpoints: &[A],
        authorities: &[B],
    ) -> Result<Self> {
        Ok(Self {
            arm_endpoints: origins("allowed ARM endpoint", arm_endpoints)?,
            authorities: origins("allowed authority", authorities)?,
        })
    }

    /// May bearer tokens (and metadata discovery) go to this ARM endpoint?
    pub fn check_arm_endpoint(&self, url: &Url) -> Result<()> {
        check(&self.arm_endpoints, "ARM endpoint", url)
    }

    /// May the client secret go to this login endpoint?
    pub fn check_authority(&self, url: &Url) -> Result<()> {
        check(&self.authorities, "login endpoint", url)
    }
}

fn check(allowed: &[Origin], what: &str, url: &Url) -> Result<()> {
    require_secure(what, url)?;
    if allowed.is_empty() || allowed.contains(&url.origin()) {
        Ok(())
    } else {
        Err(untrusted(what, url, "not in the operator's allow-list"))
    }
}

fn origins<S: AsRef<str>>(what: &str, entries: &[S]) -> Result<Vec<Origin>> {
    entries
        .iter()
        .map(|e| {
            let u = parse_url(e.as_ref().trim())?;
            require_secure(what, &u)?;
            if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
                return Err(Error::InvalidInput(format!(
                    "{what} {:?} must be an origin such as https://login.example.com",
                    e.as_ref()
                )));
            }
            Ok(u.origin())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        for ok in [
            "https://login.microsoftonline.com/",
            "http://127.0.0.1:8080/",
            "http://127.9.8.7/",
            "http://[::1]:9/adfs/",
            "http://LOCALHOST:1/",
        ] {
            require_secure("x", &url(ok)).unwrap();
        }
        for bad in [
            "http://login.microsoftonline.com/",
            "http://10.0.0.1/",
            "http://128.0.0.1/",
            "http://localhost.evil.example/",
            "http://[::2]/",
            "ftp://127.0.0.1/",
        ] {
            let err = require_secure("login endpoint", &url(bad)).unwrap_err();
            assert!(
                matches!(err, Error::UntrustedEndpoint { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn allow_lists_match_origins() {
        let p = EndpointPolicy::new(
            &["https://management.local.azurestack.external"],
            &[
                "https://adfs.local.azurestack.external:443/",
                "http://127.0.0.1:7000",
            ],
        )
        .unwrap();
        p.check_arm_endpoint(&url("https://management.local.azurestack.external/x/y"))
            .unwrap();
        p.check_authority(&url("https://adfs.local.azurestack.external/adfs/"))
            .unwrap();
        p.check_authority(&url("http://127.0.0.1:7000/tenant/"))
            .unwrap();
        for bad in [
            "https://adfs.local.azurestack.external:8443/adfs/",
            "http://127.0.0.1:7001/",
            "https://evil.example/adfs/",
        ] {
            let err = p.check_authority(&url(bad)).unwrap_err();
            assert!(err.to_string().contains("allow-list"), "{bad}: {err}");
        }
        assert!(p.check_arm_endpoint(&url("https://evil.example/")).is_err());
        // An empty policy still refuses plain http off loopback.
        let any = EndpointPolicy::default();
        any.check_authority(&url("https://anything.example/"))
            .unwrap();
        assert!(any.check_authority(&url("http://10.1.1.1/")).is_err());
    }

    #[test]
    fn allow_list_entries_are_plain_origins() {
        let none: [&str; 0] = [];
        for bad in [
            "https://login.example.com/tenant",
            "https://login.example.com/?x=1",
            "http://login.example.com",
            "not a url",
        ] {
            assert!(EndpointPolicy::new(&[bad], &none).is_err(), "{bad}");
            assert!(EndpointPolicy::new(&none, &[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_show_the_origin_only() {
        let err = require_secure("x", &url("http://10.0.0.1/path?sig=secret")).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("http://10.0.0.1"), "{err}");
    }
}
