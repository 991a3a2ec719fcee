//! Azure ML compute rules beyond the schema: the workspace's region, the documented key
//! formats of a VirtualMachine attach, and `Workspaces_Get`.

mod common;

use common::*;
use edgetrain_sandbox_azure::{TEST_SSH_PRIVATE_KEY_PEM, TEST_SSH_PUBLIC_KEY};
use serde_json::{Value, json};

fn attach(location: &str, private_key: &str) -> Value {
    json!({"location": location, "properties": {"computeType": "VirtualMachine",
        "properties": {"address": "127.0.0.1", "sshPort": 22,
            "administratorAccount": {"username": "azureuser", "privateKeyData": private_key,
                "publicKeyData": TEST_SSH_PUBLIC_KEY}}}})
}

#[tokio::test]
async fn compute_lives_in_its_workspace_region_with_an_rsa_pem_key() {
    let (sim, _dir) = start(false).await;
    let arm = Arm::public(&sim).await;
    let compute = format!("{}/computes/edge?api-version={ML_API}", ws());

    // The workspace (Workspaces_Get) says where computes go.
    let workspace = arm.get(&format!("{}?api-version={ML_API}", ws())).await;
    assert_eq!(workspace.status, 200, "{}", workspace.body);
    assert_eq!(workspace.body["location"], "westeurope");
    let missing = arm
        .get(&format!(
            "{}/providers/Microsoft.MachineLearningServices/workspaces/nope?api-version={ML_API}",
            rg()
        ))
        .await;
    assert_eq!(missing.status, 404);

    // The Stack Hub region is not the workspace's: refused, as ARM does.
    let r = arm
        .put(&compute, &attach("local", TEST_SSH_PRIVATE_KEY_PEM))
        .await;
    assert_eq!((r.status, r.code()), (400, "UserError"), "{}", r.body);
    assert_eq!(r.body["error"]["target"], "location");

    // An OpenSSH-format private key is not the documented RSA PEM.
    let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    let r = arm.put(&compute, &attach("westeurope", openssh)).await;
    assert_eq!((r.status, r.code()), (400, "UserError"), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("privateKeyData")
    );

    let ok = arm
        .put(&compute, &attach("West Europe", TEST_SSH_PRIVATE_KEY_PEM))
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(
        sim.counters()
            .get("PUT", "Microsoft.MachineLearningServices"),
        3
    );
}
