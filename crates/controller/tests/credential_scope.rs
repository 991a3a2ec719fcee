//! Issue 9 end to end: the controller against the sandbox API server and the Azure simulator,
//! attacked the way a user of another namespace would.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use edgetrain_api::EdgeComputeTarget;
use edgetrain_controller::{EndpointPolicy, metrics::Metrics};
use k8s_openapi::api::{
    core::v1::{Namespace, Secret},
    events::v1::Event,
};
use kube::{Api, api::PostParams};
use serde_json::json;

/// A Warning event with `reason` about `name` in `ns`.
async fn warning(w: &World, ns: &str, name: &str, reason: &str) -> Event {
    let ev = wait_event_in(w, ns, name, reason, 60).await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"), "{ev:?}");
    ev
}

async fn create_in(w: &World, ns: &str, mut body: serde_json::Value) -> EdgeComputeTarget {
    body["metadata"]["namespace"] = json!(ns);
    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), ns);
    let obj: EdgeComputeTarget = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// A namespace with Secrets named like the victim's, holding the victim's ids and `secret`s.
async fn namespace_with_secrets(w: &World, ns: &str, hub_secret: &str, ml_secret: &str) {
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces.create(&PostParams::default(), &n).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), ns);
    for (name, id, secret) in [
        ("hub-sp", HUB_CLIENT, hub_secret),
        ("ml-sp", ML_CLIENT, ml_secret),
    ] {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "stringData": {"tenantId": TENANT, "clientId": id, "clientSecret": secret}
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
}

fn is_ready(e: &EdgeComputeTarget) -> bool {
    e.status.as_ref().is_some_and(|s| {
        edgetrain_api::conditions::is_true_for(&s.conditions, "Ready", e.metadata.generation)
    })
}

/// The borrowed-token case: team-b knows team-a's tenant and client ids but not the secret.
/// Before the fix the shared token cache handed team-b the token team-a's secret had earned, and
/// team-b's VM, network and compute were created with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_in_another_namespace_gets_no_token_and_no_resources() {
    let w = world(200).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create(&w, ect_json(&w, "owner", json!({}))).await;
    wait_ready(&w, "owner", 120).await;
    let tokens_before = count(&w, "POST", "token");

    namespace_with_secrets(&w, "team-b", "guessed-hub-secret", "guessed-ml-secret").await;
    let mut body = ect_json(&w, "borrower", json!({}));
    body["spec"]["azureML"]["computeName"] = json!("c-borrower");
    create_in(&w, "team-b", body).await;
    let ev = warning(&w, "team-b", "borrower", "CredentialsRejected").await;
    assert!(
        !ev.note.unwrap_or_default().contains("guessed"),
        "secret in an event"
    );

    // The borrower asked the token endpoint (and was refused) instead of being served.
    assert!(count(&w, "POST", "token") > tokens_before);
    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), "team-b");
    let borrower = api.get("borrower").await.unwrap();
    assert!(!is_ready(&borrower), "{:?}", borrower.status);
    let leaked: Vec<_> = inventory(&w)
        .into_iter()
        .filter(|(_, id)| id.contains("team-b-borrower") || id.ends_with("/computes/c-borrower"))
        .collect();
    assert!(
        leaked.is_empty(),
        "created with a borrowed token: {leaked:?}"
    );
    // The owner is untouched.
    assert!(is_ready(&get(&w, "owner").await.unwrap()));
    ctl.abort();
}

/// What a rogue "ARM endpoint" on loopback received.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<(String, String, String)>>>);

/// Serves metadata naming itself as the login endpoint, and "tokens" to whoever posts.
async fn rogue_arm() -> (String, Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            let host = req.headers()["host"].to_str().unwrap().to_owned();
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            log.0.lock().unwrap().push((
                parts.method.to_string(),
                parts.uri.path().to_owned(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            axum::Json(json!({
                "authentication": {"loginEndpoint": format!("http://{host}/"), "audiences": ["https://management.azure.com/"]},
                "access_token": "harvested", "expires_in": "3600"
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen, task)
}

/// The harvesting case: a user who may create EdgeComputeTargets points one at an endpoint whose
/// metadata names itself as the login endpoint. With the authorities restricted, the secret of
/// the namespace's credentials Secret never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_metadata_endpoint_receives_no_secret_when_not_allowed() {
    let w = world(200).await;
    let (rogue, seen, server) = rogue_arm().await;
    let mut cfg = config(&w, Duration::from_secs(300), Metrics::default());
    let none: [&str; 0] = [];
    cfg.endpoint_policy = EndpointPolicy::new(&none, &[w.sim.base_url()]).unwrap();
    let ctl = spawn(cfg);
    let mut body = ect_json(&w, "harvest", json!({}));
    body["spec"]["stackHub"]["armEndpoint"] = json!(rogue);
    body["spec"]["azureML"]["armEndpoint"] = json!(rogue);
    create(&w, body).await;
    warning(&w, &w.ns, "harvest", "UntrustedEndpoint").await;

    let seen = seen.0.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the rogue's metadata was read");
    assert!(
        seen.iter().all(|(method, path, body)| method == "GET"
            && path == "/metadata/endpoints"
            && !body.contains(HUB_SECRET)
            && !body.contains(ML_SECRET)),
        "the rogue endpoint received more than a metadata read: {seen:?}"
    );
    assert!(!is_ready(&get(&w, "harvest").await.unwrap()));
    ctl.abort();
    server.abort();
}
