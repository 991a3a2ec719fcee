"""Harness: Microsoft's Python SDKs pointed at a running Azure simulator.

`tests/sdk_contract.rs` starts the simulator in-process and runs this suite with the
environment variables read below. The SDKs are used as their documentation shows; what
differs is only how they reach a loopback http server instead of Azure. These hooks live
here, in the test harness, and nowhere else:

- `LoopbackToken`: a small `TokenCredential` that runs the client-credentials flow against
  the simulator's Azure AD v2 token endpoint (azure-identity would insist on a real authority).
- `LoopbackBearerPolicy`: azure-core's bearer policy refuses to send a token over http; this
  one adds `Authorization: Bearer` itself and allows plain http for 127.0.0.1/localhost only.
  It also fixes the token audience: the Stack Hub audience for Compute/Network, public ARM's
  for Azure ML (azure-ai-ml would derive it from the custom cloud's ARM URL).
- mgmt clients: `base_url` = the simulator, `profile=KnownProfiles.v2020_09_01_hybrid` (what
  Azure Stack Hub users pass: Compute 2020-06-01, Network 2018-11-01).
- azure-ai-ml: a custom cloud whose resource manager is the simulator, and a request hook
  that pins `Microsoft.MachineLearningServices` calls to api-version 2025-12-01, the only
  one the simulator carries (azure-ai-ml calls several older ones; real Azure serves them all).
- `*.blob.localhost` resolves to 127.0.0.1 (the default datastore's host-style URL) and the
  sandbox CA signs Azurite's certificate (`REQUESTS_CA_BUNDLE`, set by the Rust driver).
"""

import os
import socket
import time
import urllib.parse

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy

ML_NAMESPACE = "microsoft.machinelearningservices"
ML_API_VERSION = "2025-12-01"
PUBLIC_AUDIENCE = "https://management.azure.com/"


def env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run this suite through `cargo test --test sdk_contract`")
    return value


class Sandbox:
    """What the Rust driver tells us about the running simulator."""

    def __init__(self):
        self.url = env("SANDBOX_AZURE_URL").rstrip("/")
        self.tenant = env("SANDBOX_TENANT")
        self.client_id = env("SANDBOX_CLIENT_ID")
        self.client_secret = env("SANDBOX_CLIENT_SECRET")
        self.subscription = env("SANDBOX_SUBSCRIPTION")
        self.stack_hub_audience = env("SANDBOX_STACK_HUB_AUDIENCE")
        self.ml_resource_group = env("SANDBOX_ML_RESOURCE_GROUP")
        self.workspace = env("SANDBOX_WORKSPACE")
        self.workspace_location = env("SANDBOX_WORKSPACE_LOCATION")
        self.azurite_port = int(env("SANDBOX_AZURITE_PORT"))


class LoopbackToken:
    """TokenCredential: client credentials against the simulator's v2 token endpoint."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.cache = {}

    def get_token(self, *scopes, **kwargs):
        scope = scopes[0]
        cached = self.cache.get(scope)
        if cached and cached.expires_on > time.time() + 60:
            return cached
        resp = requests.post(
            f"{self.sandbox.url}/{self.sandbox.tenant}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.sandbox.client_id,
                "client_secret": self.sandbox.client_secret,
                "scope": scope,
            },
            timeout=30,
        )
        resp.raise_for_status()
        body = resp.json()
        token = AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))
        self.cache[scope] = token
        return token


class LoopbackBearerPolicy(SansIOHTTPPolicy):
    """Bearer tokens for the given scope; plain http only towards loopback."""

    def __init__(self, credential, scope):
        self.credential = credential
        self.scope = scope

    def on_request(self, request):
        # azure-ai-ml passes azure-core's per-call switch for its bearer policy; this policy
        # replaces that one, so it takes the option off the request (the transport would choke).
        request.context.options.pop("enforce_https", None)
        url = urllib.parse.urlparse(request.http_request.url)
        if url.scheme != "https" and url.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"refusing to send a bearer token over {url.scheme} to {url.hostname}")
        token = self.credential.get_token(self.scope).token
        request.http_request.headers["Authorization"] = f"Bearer {token}"


def pin_ml_api_version(request):
    """raw_request_hook: Azure ML calls go to the one api-version the simulator serves."""
    http = request.http_request
    parts = urllib.parse.urlsplit(http.url)
    if f"/providers/{ML_NAMESPACE}/" not in parts.path.lower():
        return
    query = [
        (k, ML_API_VERSION if k == "api-version" else v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    http.url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


_real_getaddrinfo = socket.getaddrinfo


def _loopback_blob_hosts(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".blob.localhost"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_blob_hosts


@pytest.fixture(scope="session")
def sandbox():
    return Sandbox()


@pytest.fixture(scope="session")
def credential(sandbox):
    return LoopbackToken(sandbox)


def mgmt_kwargs(sandbox, credential):
    from azure.profiles import KnownProfiles

    return {
        "base_url": sandbox.url,
        "profile": KnownProfiles.v2020_09_01_hybrid,
        "authentication_policy": LoopbackBearerPolicy(
            credential, sandbox.stack_hub_audience.rstrip("/") + "/.default"
        ),
        "polling_interval": 0.2,
    }


@pytest.fixture(scope="session")
def compute_client(sandbox, credential):
    from azure.mgmt.compute import ComputeManagementClient

    return ComputeManagementClient(credential, sandbox.subscription, **mgmt_kwargs(sandbox, credential))


@pytest.fixture(scope="session")
def network_client(sandbox, credential):
    from azure.mgmt.network import NetworkManagementClient

    return NetworkManagementClient(credential, sandbox.subscription, **mgmt_kwargs(sandbox, credential))


@pytest.fixture(scope="session")
def ml_client(sandbox, credential):
    from azure.ai.ml import MLClient

    url = sandbox.url
    return MLClient(
        credential,
        subscription_id=sandbox.subscription,
        resource_group_name=sandbox.ml_resource_group,
        workspace_name=sandbox.workspace,
        cloud="EdgetrainSandbox",
        cloud_metadata={
            "azure_portal": url,
            "resource_manager": url,
            "active_directory": url,
            "aml_resource_id": PUBLIC_AUDIENCE,
            "storage_endpoint": f"localhost:{sandbox.azurite_port}",
            "registry_discovery_endpoint": url,
        },
        authentication_policy=LoopbackBearerPolicy(credential, PUBLIC_AUDIENCE + ".default"),
        raw_request_hook=pin_ml_api_version,
        enable_telemetry=False,
        show_progress=False,
    )
