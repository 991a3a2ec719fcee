"""azure-ai-ml against the simulated Azure ML workspace: workspace, datastore, compute,
environments, a command job with local code through to Completed, cancel, models."""

import time

import pytest
from azure.ai.ml import command
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Environment, Model, VirtualMachineCompute, VirtualMachineSshSettings
from azure.core.exceptions import ResourceNotFoundError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

COMPUTE = "sdk-vm"
ENVIRONMENT = "sdk-env"
TERMINAL = {"Completed", "Failed", "Canceled"}
# Hang guard for a job that never ends, not a timing assertion.
JOB_LIMIT_S = 300


def wait_terminal(ml_client, name):
    deadline = time.monotonic() + JOB_LIMIT_S
    while time.monotonic() < deadline:
        job = ml_client.jobs.get(name)
        if job.status in TERMINAL:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {name} did not finish; last status {job.status}")


@pytest.fixture(scope="module")
def compute(ml_client, sandbox, tmp_path_factory):
    """An attached VirtualMachine compute, as azure-ai-ml attaches one (RSA key in PKCS#1 PEM,
    the format Azure ML documents and the simulator enforces)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path_factory.mktemp("ssh") / "id_rsa"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    vm_id = (
        f"/subscriptions/{sandbox.subscription}/resourceGroups/{sandbox.ml_resource_group}"
        "/providers/Microsoft.Compute/virtualMachines/trainer"
    )
    vm = VirtualMachineCompute(
        name=COMPUTE,
        resource_id=vm_id,
        ssh_settings=VirtualMachineSshSettings(
            admin_username="azureuser", ssh_private_key_file=str(key_file), ssh_port=22
        ),
    )
    return ml_client.compute.begin_create_or_update(vm).result()


@pytest.fixture(scope="module")
def environment(ml_client):
    return ml_client.environments.create_or_update(
        Environment(
            name=ENVIRONMENT,
            version="1",
            image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
            description="sdk contract",
        )
    )


def test_workspace_get_has_region_and_tracking_uri(ml_client, sandbox):
    ws = ml_client.workspaces.get(sandbox.workspace)
    assert ws.name == sandbox.workspace
    assert ws.location == sandbox.workspace_location
    assert ws.mlflow_tracking_uri.startswith("azureml://")
    assert ws.mlflow_tracking_uri.endswith(f"/workspaces/{sandbox.workspace}")
    assert ws.discovery_url.startswith(sandbox.url)
    assert "/providers/Microsoft.Storage/storageAccounts/" in ws.storage_account
    assert ws._workspace_id


def test_default_datastore(ml_client):
    store = ml_client.datastores.get_default()
    assert store.name == "workspaceblobstore"
    assert store.type == "AzureBlob"
    assert store.account_name and store.container_name


def test_compute_get_and_list(ml_client, compute, sandbox):
    assert compute.provisioning_state == "Succeeded"
    got = ml_client.compute.get(COMPUTE)
    assert got.type == "virtualmachine"
    assert got.location == sandbox.workspace_location
    assert got.resource_id.endswith("/virtualMachines/trainer")
    assert [c.name for c in ml_client.compute.list()] == [COMPUTE]


def test_environment_create_get_list(ml_client, environment):
    assert environment.image.startswith("mcr.microsoft.com/")
    got = ml_client.environments.get(ENVIRONMENT, version="1")
    assert got.os_type == "Linux"
    assert got.description == "sdk contract"
    assert [e.version for e in ml_client.environments.list(name=ENVIRONMENT)] == ["1"]
    assert ENVIRONMENT in [e.name for e in ml_client.environments.list()]


def test_command_job_with_local_code_completes(ml_client, compute, environment, tmp_path):
    (tmp_path / "train.py").write_text(
        "import json, os\n"
        "os.makedirs('outputs', exist_ok=True)\n"
        "json.dump({'accuracy': 0.9}, open('outputs/metrics.json', 'w'))\n"
        "print('trained')\n"
    )
    job = command(
        code=str(tmp_path),
        command="python3 train.py",
        environment=f"azureml:{ENVIRONMENT}:1",
        compute=COMPUTE,
        display_name="sdk contract job",
        experiment_name="sdk-contract",
    )
    created = ml_client.jobs.create_or_update(job)
    assert created.status not in ("Failed", "Canceled")
    assert created.compute == COMPUTE
    finished = wait_terminal(ml_client, created.name)
    assert finished.status == "Completed"
    assert created.name in [j.name for j in ml_client.jobs.list()]


def test_job_cancel_through_poller(ml_client, compute, environment, tmp_path):
    (tmp_path / "wait.sh").write_text("sleep 600\n")
    job = command(code=str(tmp_path), command="sh wait.sh", environment=f"azureml:{ENVIRONMENT}:1", compute=COMPUTE)
    created = ml_client.jobs.create_or_update(job)
    ml_client.jobs.begin_cancel(created.name).result()
    assert wait_terminal(ml_client, created.name).status == "Canceled"


@pytest.mark.xfail(
    strict=True,
    raises=ResourceNotFoundError,
    reason="the simulator has no run history data plane (/history/v1.0/...), which jobs.stream reads",
)
def test_log_streaming_needs_run_history(ml_client, compute, environment, tmp_path):
    (tmp_path / "hi.sh").write_text("echo hi\n")
    job = ml_client.jobs.create_or_update(
        command(code=str(tmp_path), command="sh hi.sh", environment=f"azureml:{ENVIRONMENT}:1", compute=COMPUTE)
    )
    ml_client.jobs.stream(job.name)


def test_models_create_get_list(ml_client):
    path = "azureml://datastores/workspaceblobstore/paths/models/churn/"
    created = ml_client.models.create_or_update(
        Model(name="churn", version="1", path=path, type=AssetTypes.CUSTOM_MODEL, description="sdk contract")
    )
    assert created.version == "1"
    got = ml_client.models.get("churn", version="1")
    assert got.type == AssetTypes.CUSTOM_MODEL
    assert got.path.rstrip("/").endswith("models/churn")
    # Reading the version at all needs `flavors` on the wire (an object even when empty); the
    # entity shows an empty one as None.
    assert got.flavors is None
    flavors = {"python_function": {"loader_module": "mlflow.sklearn"}}
    ml_client.models.create_or_update(
        Model(name="churn", version="2", path=path, type=AssetTypes.CUSTOM_MODEL, flavors=flavors)
    )
    assert ml_client.models.get("churn", version="2").flavors == flavors
    assert sorted(m.version for m in ml_client.models.list(name="churn")) == ["1", "2"]
    assert list(ml_client.models.list(name="never-registered")) == []
