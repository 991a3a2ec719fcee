//! Parsing List Blobs XML pages (pure).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::{Error, Result};

/// One listed blob: what the fingerprint needs, without downloading data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobItem {
    pub name: String,
    pub size: u64,
    /// Base64 MD5, when the blob has one stored.
    pub content_md5: Option<String>,
    pub etag: String,
    pub last_modified: DateTime<Utc>,
}

/// A page of results and the marker of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPage {
    pub items: Vec<BlobItem>,
    pub next_marker: Option<String>,
}

#[derive(Deserialize)]
struct EnumerationResults {
    #[serde(rename = "Blobs", default)]
    blobs: Blobs,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Deserialize, Default)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<BlobXml>,
}

#[derive(Deserialize)]
struct BlobXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Properties")]
    properties: PropertiesXml,
}

#[derive(Deserialize)]
struct PropertiesXml {
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Etag")]
    etag: String,
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "Content-MD5", default)]
    content_md5: Option<String>,
}

/// ETags in the quoted form the `ETag` header uses (listings send them bare).
pub fn normalize_etag(e: &str) -> String {
    let t = e.trim();
    if t.starts_with('"') {
        t.to_string()
    } else {
        format!("\"{t}\"")
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// RFC 1123 dates as used in blob responses.
pub fn parse_http_date(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| Error::decode("blob date", format!("{s:?}: {e}")))
}

/// Parse one List Blobs response body.
pub fn parse_list_page(xml: &str) -> Result<BlobPage> {
    let r: EnumerationResults =
        quick_xml::de::from_str(xml).map_err(|e| Error::decode("List Blobs XML", e))?;
    let items = r
        .blobs
        .blob
        .into_iter()
        .map(|b| {
            Ok(BlobItem {
                name: b.name,
                size: b.properties.content_length,
                content_md5: non_empty(b.properties.content_md5),
                etag: normalize_etag(&b.properties.etag),
                last_modified: parse_http_date(&b.properties.last_modified)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(BlobPage {
        items,
        next_marker: non_empty(r.next_marker),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_page_with_marker_and_missing_md5() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="https://acct.blob.local/" ContainerName="train">
  <Prefix>data/</Prefix><MaxResults>2</MaxResults>
  <Blobs>
    <Blob><Name>data/a.csv</Name><Properties><Creation-Time>Wed, 25 Nov 2026 03:00:00 GMT</Creation-Time>
      <Last-Modified>Wed, 25 Nov 2026 03:00:01 GMT</Last-Modified><Etag>0x8D1</Etag>
      <Content-Length>12</Content-Length><Content-Type>text/csv</Content-Type>
      <Content-MD5>XrY7u+Ae7tCTyyK7j1rNww==</Content-MD5><BlobType>BlockBlob</BlobType></Properties><Metadata /></Blob>
    <Blob><Name>data/b.csv</Name><Properties>
      <Last-Modified>Wed, 25 Nov 2026 03:00:02 GMT</Last-Modified><Etag>"0x8D2"</Etag>
      <Content-Length>0</Content-Length><Content-MD5 /></Properties></Blob>
  </Blobs>
  <NextMarker>2!72!data/c.csv</NextMarker>
</EnumerationResults>"#;
        let p = parse_list_page(xml).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0].name, "data/a.csv");
        assert_eq!(p.items[0].size, 12);
        assert_eq!(
            p.items[0].content_md5.as_deref(),
            Some("XrY7u+Ae7tCTyyK7j1rNww==")
        );
        assert_eq!(
            p.items[0].last_modified.to_rfc3339(),
            "2026-11-25T03:00:01+00:00"
        );
        assert_eq!(p.items[1].content_md5, None);
        assert_eq!(p.items[0].etag, "\"0x8D1\"");
        assert_eq!(p.items[1].etag, "\"0x8D2\"");
        assert_eq!(p.next_marker.as_deref(), Some("2!72!data/c.csv"));
    }

    #[test]
    fn last_page_and_empty_container() {
        let xml =
            r#"<EnumerationResults ContainerName="x"><Blobs /><NextMarker /></EnumerationResults>"#;
        let p = parse_list_page(xml).unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.next_marker, None);
        assert!(parse_list_page("<nope").is_err());
    }
}
