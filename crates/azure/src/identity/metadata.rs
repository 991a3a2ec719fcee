//! Discovery: `{arm}/metadata/endpoints` names the login endpoint and audiences.

use serde::Deserialize;
use url::Url;

use crate::{Error, Result, error::parse_url, transport::join_url};

/// api-version of the metadata endpoint (Stack Hub and public Azure both answer it).
pub const METADATA_API_VERSION: &str = "2015-01-01";

/// What `{arm}/metadata/endpoints` says about authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudMetadata {
    /// Authority base, e.g. `https://login.microsoftonline.com/` or `https://adfs.local/adfs/`.
    pub login_endpoint: Url,
    /// Token audiences for this ARM; the first one is ARM's.
    pub audiences: Vec<String>,
}

impl CloudMetadata {
    /// ARM's own audience (`audiences[0]`).
    pub fn arm_audience(&self) -> &str {
        &self.audiences[0]
    }
}

/// URL of the metadata document for an ARM base URL.
pub fn metadata_url(arm: &Url) -> Result<Url> {
    let mut u = join_url(arm, "metadata/endpoints")?;
    u.query_pairs_mut()
        .append_pair("api-version", METADATA_API_VERSION);
    Ok(u)
}

/// Parse the metadata document; unknown fields are ignored.
pub fn parse_metadata(body: &[u8]) -> Result<CloudMetadata> {
    #[derive(Deserialize)]
    struct Doc {
        authentication: Auth,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Auth {
        login_endpoint: String,
        audiences: Vec<String>,
    }
    let doc: Doc =
        serde_json::from_slice(body).map_err(|e| Error::decode("metadata/endpoints", e))?;
    let audiences: Vec<String> = doc
        .authentication
        .audiences
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    if audiences.is_empty() {
        return Err(Error::decode(
            "metadata/endpoints",
            "authentication.audiences is empty",
        ));
    }
    Ok(CloudMetadata {
        login_endpoint: parse_url(&doc.authentication.login_endpoint)?,
        audiences,
    })
}

/// Fetch and parse `{arm}/metadata/endpoints` (no authentication needed).
pub async fn discover(http: &reqwest::Client, arm: &Url) -> Result<CloudMetadata> {
    let url = metadata_url(arm)?;
    let resp = http
        .get(url.clone())
        .send()
        .await
        .map_err(|source| Error::Transport {
            method: "GET".into(),
            url: url.to_string(),
            source,
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|source| Error::Transport {
        method: "GET".into(),
        url: url.to_string(),
        source,
    })?;
    if !status.is_success() {
        return Err(Error::decode(
            url.to_string(),
            format!("HTTP {status} from metadata endpoint"),
        ));
    }
    parse_metadata(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_parses_and_ignores_unknown_fields() {
        let body = br#"{"galleryEndpoint":"https://g/","graphEndpoint":"https://graph/",
            "portalEndpoint":"https://p/","identityProvider":"ADFS",
            "authentication":{"loginEndpoint":"https://adfs.local.azurestack.external/adfs/",
            "audiences":["https://management.adfs.azurestack.local/4de1"],"tenant":"adfs"}}"#;
        let md = parse_metadata(body).unwrap();
        assert_eq!(
            md.login_endpoint.as_str(),
            "https://adfs.local.azurestack.external/adfs/"
        );
        assert_eq!(
            md.arm_audience(),
            "https://management.adfs.azurestack.local/4de1"
        );
    }

    #[test]
    fn metadata_without_audiences_is_an_error() {
        let body = br#"{"authentication":{"loginEndpoint":"https://login/","audiences":[]}}"#;
        assert!(parse_metadata(body).is_err());
    }

    #[test]
    fn metadata_url_keeps_base_path_and_api_version() {
        let u = metadata_url(&Url::parse("http://127.0.0.1:4000/arm").unwrap()).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:4000/arm/metadata/endpoints?api-version=2015-01-01"
        );
    }
}
