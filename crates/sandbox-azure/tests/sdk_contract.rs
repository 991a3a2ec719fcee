//! Microsoft's own Python SDKs (azure-mgmt-compute, azure-mgmt-network, azure-ai-ml) drive the
//! simulator as their users would: the suite in `tests/python/` (harness hooks documented in
//! its `conftest.py`). A response the SDKs cannot parse, or a value they read back wrong,
//! fails this test. Needs the tools venv (`scripts/install-tools.sh`) first on `PATH`.

mod common;

use std::{path::Path, process::Stdio, time::Duration};

use common::{CLIENT_ID, CLIENT_SECRET, SUB, TENANT};

/// Guard against a hung SDK call; far above the suite's normal run time.
const SUITE_LIMIT: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_python_sdks_accept_the_simulator_answers() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import azure.ai.ml, azure.mgmt.compute, azure.mgmt.network, pytest",
        ])
        .output()
        .expect("python3 on PATH");
    assert!(
        probe.status.success(),
        "the SDK contract suite needs {} installed in the python3 on PATH (scripts/install-tools.sh puts them into tools/venv): {}",
        suite.join("requirements.txt").display(),
        String::from_utf8_lossy(&probe.stderr)
    );

    let (sim, dir) = common::start(true).await;
    let storage = sim.storage_endpoints().expect("azurite runs");
    let ws = &sim.config().workspaces[0];
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args([
        "-m",
        "pytest",
        "-q",
        "-rxXs",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:warnings",
    ])
    .arg("--rootdir")
    .arg(&suite)
    .arg("--basetemp")
    .arg(dir.path().join("pytest"))
    .arg(&suite)
    .env("SANDBOX_AZURE_URL", sim.base_url())
    .env("SANDBOX_TENANT", TENANT)
    .env("SANDBOX_CLIENT_ID", CLIENT_ID)
    .env("SANDBOX_CLIENT_SECRET", CLIENT_SECRET)
    .env("SANDBOX_SUBSCRIPTION", SUB)
    .env(
        "SANDBOX_STACK_HUB_AUDIENCE",
        &sim.config().stack_hub_audience,
    )
    .env("SANDBOX_ML_RESOURCE_GROUP", &ws.resource_group)
    .env("SANDBOX_WORKSPACE", &ws.name)
    .env("SANDBOX_WORKSPACE_LOCATION", &ws.location)
    .env("SANDBOX_AZURITE_PORT", storage.port.to_string())
    .env("REQUESTS_CA_BUNDLE", &storage.ca_pem_path)
    .env("SSL_CERT_FILE", &storage.ca_pem_path)
    .env("NO_PROXY", "127.0.0.1,localhost,.localhost")
    .env("PYTHONDONTWRITEBYTECODE", "1")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let output = tokio::time::timeout(SUITE_LIMIT, cmd.output())
        .await
        .expect("the SDK contract suite hung")
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    sim.shutdown().await;
    assert!(
        output.status.success(),
        "the SDK contract suite failed (pytest exit {:?}); its output is above",
        output.status.code()
    );
    // pytest exits 0 also when it collected nothing; the suite must have run.
    assert!(stdout.contains(" passed"), "no SDK test ran: {stdout}");
}
