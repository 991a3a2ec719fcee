//! Paged listings stream page by page (request-recording fake).

mod common;

use std::sync::Arc;

use azure_core::credentials::Secret;
use common::fake::{Fake, Reply, StaticCredential};
use edgetrain_azure::{
    arm::ArmClient,
    blob::{BlobApi, BlobAuth, BlobClient, BlobEndpoint},
    transport::HttpConfig,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

const PAGE: usize = 5000;
const TOTAL: usize = 100_000;

fn blob_page(start: usize) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="data"><Blobs>"#,
    );
    for i in start..(start + PAGE).min(TOTAL) {
        xml.push_str(&format!(
            "<Blob><Name>p/{i:06}</Name><Properties><Last-Modified>Wed, 25 Nov 2026 03:00:00 GMT</Last-Modified><Etag>0x{i:X}</Etag><Content-Length>{i}</Content-Length><Content-MD5 /></Properties></Blob>"
        ));
    }
    xml.push_str("</Blobs>");
    if start + PAGE < TOTAL {
        xml.push_str(&format!("<NextMarker>m{}</NextMarker>", start + PAGE));
    } else {
        xml.push_str("<NextMarker />");
    }
    xml.push_str("</EnumerationResults>");
    xml
}

#[tokio::test]
async fn hundred_thousand_blobs_stream_one_page_per_request() {
    let fake = Fake::start(|req, _| {
        let start = req
            .query_value("marker")
            .map(|m| m[1..].parse().unwrap())
            .unwrap_or(0);
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/xml".into())],
            body: blob_page(start),
        }
    })
    .await;
    let ep = BlobEndpoint::parse(&fake.url("/acct")).unwrap();
    let client = BlobClient::new(
        HttpConfig::default().build().unwrap(),
        ep,
        BlobAuth::Sas(Secret::new("sv=2019-07-07&sig=x")),
    );
    let mut stream = client.list("data", "p/");
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.name, "p/000000");
    assert_eq!(
        fake.requests().len(),
        1,
        "the first item needs only the first page"
    );
    let mut count = 1;
    let mut last_size = 0;
    while let Some(item) = stream.try_next().await.unwrap() {
        count += 1;
        last_size = item.size;
        if count == PAGE + 1 {
            assert_eq!(
                fake.requests().len(),
                2,
                "pages are fetched as they are reached"
            );
        }
    }
    assert_eq!(count, TOTAL);
    assert_eq!(last_size, (TOTAL - 1) as u64);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), TOTAL / PAGE);
    assert_eq!(reqs[0].query_value("restype").as_deref(), Some("container"));
    assert_eq!(reqs[0].query_value("comp").as_deref(), Some("list"));
    assert_eq!(reqs[0].query_value("prefix").as_deref(), Some("p/"));
    assert_eq!(
        reqs[0].query_value("sig").as_deref(),
        Some("x"),
        "SAS appended"
    );
    assert_eq!(reqs[1].query_value("marker").as_deref(), Some("m5000"));
    assert!(
        reqs.iter()
            .all(|r| r.headers["x-ms-version"] == "2019-07-07")
    );
}

#[tokio::test]
async fn arm_list_follows_next_link_lazily() {
    let fake = Fake::start(|req, _| {
        let host = req.headers["host"].to_str().unwrap().to_string();
        match req.query_value("$skiptoken").as_deref() {
            None => Reply::json(200, json!({"value": [{"n": 1}, {"n": 2}], "nextLink": format!("http://{host}/x?api-version=1&$skiptoken=b")})),
            Some("b") => Reply::json(200, json!({"value": [], "nextLink": format!("http://{host}/x?api-version=1&$skiptoken=c")})),
            _ => Reply::json(200, json!({"value": [{"n": 3}]})),
        }
    })
    .await;
    let arm = ArmClient::new(
        HttpConfig::default().build().unwrap(),
        fake.base.clone(),
        Arc::new(StaticCredential),
        "https://management.azure.com/",
    );
    let first = arm.url("/x", "1", &[]).unwrap();
    let mut s = Box::pin(arm.list::<serde_json::Value>(first.clone()));
    assert_eq!(s.next().await.unwrap().unwrap()["n"], 1);
    assert_eq!(fake.requests().len(), 1);
    let all: Vec<serde_json::Value> = arm.list(first).try_collect().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|v| v["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        fake.requests().len(),
        4,
        "1 + 3 pages (an empty middle page is followed)"
    );
}
