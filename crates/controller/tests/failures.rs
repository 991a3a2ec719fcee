//! Failure semantics of the runtime against the sandbox: what stalls, what is retried, what a
//! stalled target costs Azure, and what a user reads when an endpoint cannot be reached.

mod common;

use std::time::Duration;

use common::*;
use edgetrain_azure::transport::HttpConfig;
use edgetrain_controller::{metrics::Metrics, runtime::factory::Factories};
use serde_json::json;

const COMPUTE: &str = "Microsoft.Compute";
const NET: &str = "Microsoft.Network";

/// Waits until the controller ran at least one more reconcile than `since`.
async fn another_reconcile(m: &Metrics, since: u64) {
    eventually(30, "another reconcile", || async {
        (reconciles(m) > since).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_target_makes_no_azure_request_until_its_spec_or_a_secret_changes() {
    let w = world(200).await;
    let m = Metrics::default();
    let ctl = spawn(config(&w, Duration::from_secs(300), m.clone()));
    create(
        &w,
        ect_json(&w, "hot", json!({"vm": {"size": "Standard_F72s_v2"}})),
    )
    .await;
    let (_, reason, message) = wait_stalled(&w, "hot", 60).await;
    assert_eq!(reason, "SkuNotAvailable");
    assert!(message.contains("Standard_F72s_v2"), "{message}");
    assert_eq!(count(&w, "PUT", COMPUTE), 1, "one VM PUT");
    let warning = wait_event(&w, "hot", "SkuNotAvailable", 30).await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    // Something that triggers a reconcile (a TrainingRun on the target): not one request.
    let before = requests(&w);
    let r = reconciles(&m);
    create_run(&w, "poke", "hot").await;
    another_reconcile(&m, r).await;
    assert_eq!(
        requests(&w),
        before,
        "a stalled target sends nothing to Azure"
    );
    let e = get(&w, "hot").await.unwrap();
    assert_eq!(condition(&e, "Stalled").unwrap().1, "SkuNotAvailable");

    // A change of a referenced Secret is a change: exactly one more attempt, stalled again.
    touch_secret(&w, "hub-sp", "1").await;
    eventually(30, "a second VM PUT", || async {
        (count(&w, "PUT", COMPUTE) == 2).then_some(())
    })
    .await;
    let r = reconciles(&m);
    create_run(&w, "poke-again", "hot").await;
    another_reconcile(&m, r).await;
    assert_eq!(
        count(&w, "PUT", COMPUTE),
        2,
        "stalled again after one attempt"
    );

    // Failures are logged at warn, with the reason.
    let text = logs().text();
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains("reconcile failed")
            && l.contains("SkuNotAvailable")),
        "no warn line for the failed reconcile"
    );

    // The spec fixed: provisioning goes on.
    let api: kube::Api<edgetrain_api::EdgeComputeTarget> =
        kube::Api::namespaced(w.client.clone(), &w.ns);
    api.patch(
        "hot",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"vm": {"size": "Standard_DS2_v2"}}})),
    )
    .await
    .unwrap();
    wait_ready(&w, "hot", 60).await;
    assert_eq!(count(&w, "PUT", COMPUTE), 3);
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_azure_refusal_stalls_with_its_code_and_message() {
    let w = world(200).await;
    let m = Metrics::default();
    let ctl = spawn(config(&w, Duration::from_secs(300), m.clone()));
    let missing_subnet = format!(
        "/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/nope/subnets/default"
    );
    create(
        &w,
        ect_json(
            &w,
            "badref",
            json!({"vm": {"network": {"subnetId": missing_subnet}}}),
        ),
    )
    .await;
    let (_, reason, message) = wait_stalled(&w, "badref", 60).await;
    assert_eq!(reason, "InvalidResourceReference");
    assert!(message.contains("HTTP 400"), "{message}");
    assert!(message.contains("was not found"), "{message}");
    let warning = wait_event(&w, "badref", "InvalidResourceReference", 30).await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(warning.note.unwrap_or_default().contains("nope"));
    let nic_puts = count(&w, "PUT", NET);
    let r = reconciles(&m);
    create_run(&w, "poke", "badref").await;
    another_reconcile(&m, r).await;
    assert_eq!(
        count(&w, "PUT", NET),
        nic_puts,
        "no retry of a permanent refusal"
    );
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_stall_and_resume_when_the_secret_changes() {
    let w = world(200).await;
    let m = Metrics::default();
    let ctl = spawn(config(&w, Duration::from_secs(300), m.clone()));
    set_secret(
        &w,
        "wrong-sp",
        json!({"tenantId": TENANT, "clientId": HUB_CLIENT, "clientSecret": "not-the-secret"}),
    )
    .await;
    let mut body = ect_json(&w, "locked", json!({}));
    body["spec"]["stackHub"]["credentialsSecretRef"]["name"] = json!("wrong-sp");
    create(&w, body).await;
    let (_, reason, message) = wait_stalled(&w, "locked", 60).await;
    assert_eq!(reason, "CredentialsRejected");
    assert!(message.contains("invalid_client"), "{message}");
    assert!(
        !message.contains("not-the-secret"),
        "the secret is never shown"
    );
    assert_eq!(
        count(&w, "PUT", NET) + count(&w, "PUT", COMPUTE),
        0,
        "nothing written"
    );

    // Not retried while the Secret stays as it is.
    let tokens = count(&w, "POST", "token");
    let r = reconciles(&m);
    create_run(&w, "poke", "locked").await;
    another_reconcile(&m, r).await;
    assert_eq!(count(&w, "POST", "token"), tokens, "no new token request");

    // A tenant that does not know the principal is refused the same way.
    let mut body = ect_json(&w, "elsewhere", json!({}));
    body["spec"]["azureML"]["credentialsSecretRef"]["name"] = json!("other-tenant");
    set_secret(
        &w,
        "other-tenant",
        json!({"tenantId": "99999999-0000-0000-0000-000000000000", "clientId": ML_CLIENT, "clientSecret": ML_SECRET}),
    )
    .await;
    create(&w, body).await;
    let (_, reason, message) = wait_stalled(&w, "elsewhere", 60).await;
    assert_eq!(reason, "CredentialsRejected");
    assert!(message.contains("99999999-0000"), "{message}");

    // Fixing the Secret resumes at once.
    set_secret(&w, "wrong-sp", json!({"clientSecret": HUB_SECRET})).await;
    wait_ready(&w, "locked", 60).await;
    ctl.abort();
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A server that accepts connections and never answers.
async fn silent_endpoint() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_show_the_cause() {
    let w = world(200).await;
    let m = Metrics::default();
    let mut cfg = config(&w, Duration::from_secs(300), m.clone());
    // Short timeouts so a silent endpoint is given up on quickly.
    cfg.factories = Some(
        Factories::real(
            &m,
            HttpConfig {
                connect_timeout: Duration::from_secs(2),
                read_timeout: Duration::from_secs(1),
                ..Default::default()
            },
            Default::default(),
        )
        .unwrap(),
    );
    let ctl = spawn(cfg);
    let closed = closed_port().await;
    let (silent, silent_task) = silent_endpoint().await;
    let sim_port = w
        .sim
        .base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let cases = [
        (
            "closed",
            format!("http://127.0.0.1:{closed}"),
            "EndpointUnreachable",
            "refused",
        ),
        (
            "silent",
            format!("http://127.0.0.1:{silent}"),
            "EndpointUnreachable",
            "timed out",
        ),
        (
            "notls",
            format!("https://127.0.0.1:{sim_port}"),
            "TLSError",
            "InvalidContentType",
        ),
    ];
    for (name, endpoint, _, _) in &cases {
        let mut body = ect_json(&w, name, json!({}));
        body["spec"]["stackHub"]["armEndpoint"] = json!(endpoint);
        create(&w, body).await;
    }
    for (name, _, reason, cause) in cases {
        let (status, r, message) = eventually(
            60,
            &format!("{name}: Ready=False with a reason"),
            || async {
                let e = get(&w, name).await?;
                condition(&e, "Ready").filter(|c| c.1 == reason)
            },
        )
        .await;
        assert_eq!(status, "False", "{name}");
        assert_eq!(r, reason, "{name}");
        assert!(
            message.to_lowercase().contains(&cause.to_lowercase()),
            "{name}: {message}"
        );
        let e = get(&w, name).await.unwrap();
        assert_eq!(
            condition(&e, "Reconciling").unwrap().0,
            "True",
            "{name}: retried"
        );
    }
    silent_task.abort();
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_reads_only_what_the_decision_needs() {
    let w = world(200).await;
    let m = Metrics::default();
    let ctl = spawn(config(&w, Duration::from_secs(300), m.clone()));
    create(&w, ect_json(&w, "lean", json!({}))).await;
    wait_ready(&w, "lean", 60).await;
    let text = m.render();
    let not_found = text
        .lines()
        .find(|l| {
            l.starts_with("edgetrain_azure_requests_total{")
                && l.contains("verb=\"GET\"")
                && l.contains("status_class=\"4xx\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    // One 404 per resource the first time it is looked for (NSG, vnet, public IP, NIC, VM,
    // compute), never again.
    assert!(not_found <= 6, "{not_found} GETs answered 4xx:\n{text}");
    let total = requests(&w);
    assert!(
        total <= 90,
        "{total} requests to Azure: {:?}",
        w.sim.counters()
    );
    ctl.abort();
}
