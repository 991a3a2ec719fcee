#!/usr/bin/env python3
"""The demo's closing summary: printed for a person (readable in ten seconds) and written as
JSON (`resources`, `metrics`, `modelId`, `artifactRef`, `imageRef`, `registryStorage`, ...).

Reads what the demo saved: the three resources (`kubectl get -o json`), the simulator's
sandbox.json and request counts. Fails (exit 1) when a field the summary promises is missing,
rather than writing a summary with holes.
"""

import argparse
import json
import re
import sys

DIGEST_REF = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def load(path):
    with open(path) as f:
        return json.load(f)


def by_kind(items, kind):
    found = [i for i in items if i["kind"] == kind]
    if len(found) != 1:
        sys.exit(f"summary: expected one {kind}, found {len(found)}")
    return found[0]


def ref(release, digest):
    """A full `host/repo@sha256:…` reference from a status digest (bare or full)."""
    if digest and "@" not in digest:
        reg = release["spec"]["registry"]
        digest = f"{reg['loginServer']}/{reg['repository']}@{digest}"
    if not digest or not DIGEST_REF.match(digest):
        sys.exit(f"summary: {digest!r} is not a reference by digest")
    return digest


def counts_line(counts):
    verbs = " ".join(f"{v} {n}" for v, n in counts.items() if v not in ("total", "by_kind"))
    return f"{counts['total']} ({verbs})"


def main():
    p = argparse.ArgumentParser()
    for arg in ("resources", "info", "requests", "requests-at-ready", "kubeconfig", "namespace",
                "release", "registry-password-file", "out"):
        p.add_argument(f"--{arg}", required=True)
    a = p.parse_args()

    items = load(a.resources)["items"]
    info = load(a.info)
    requests = load(a.requests)
    at_ready = load(a.requests_at_ready)
    ect = by_kind(items, "EdgeComputeTarget")
    run = by_kind(items, "TrainingRun")
    release = by_kind(items, "ModelRelease")
    es, rs, ms = (x.get("status") or {} for x in (ect, run, release))
    metrics = rs.get("metrics") or {}
    if not metrics:
        sys.exit("summary: the TrainingRun has no metrics")
    artifact = ref(release, ms.get("artifactDigest"))
    image = ref(release, ms.get("imageDigest"))
    registry = info["registry"]
    summary = {
        "resources": [
            {"kind": x["kind"], "name": x["metadata"]["name"],
             "conditions": (x.get("status") or {}).get("conditions") or []}
            for x in (ect, run, release)
        ],
        "vm": {"id": es.get("vmResourceId"), "size": es.get("vmSize"),
               "powerState": es.get("powerState"), "privateIp": es.get("privateIp")},
        "computeId": es.get("computeId"),
        "jobName": rs.get("jobName"),
        "metrics": metrics,
        "dataFingerprint": rs.get("dataFingerprint"),
        "dataBlobCount": rs.get("dataBlobCount"),
        "codeDigest": rs.get("codeDigest"),
        "modelId": ms.get("modelId"),
        "modelVersion": ms.get("modelVersion"),
        "artifactRef": artifact,
        "imageRef": image,
        "referrers": ms.get("referrers") or [],
        "bytesUploaded": ms.get("bytesUploaded"),
        "bytesReused": ms.get("bytesReused"),
        "azureRequests": requests,
        "azureRequestsToComputeTargetReady": at_ready["total"],
        "registryStorage": registry["storageDir"],
    }
    for key in ("modelId", "modelVersion", "dataFingerprint", "codeDigest"):
        if not summary[key]:
            sys.exit(f"summary: {key} is missing from the status")
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")

    model = release["spec"]["model"]["name"]
    kube = f"kubectl --kubeconfig {a.kubeconfig} -n {a.namespace}"
    skopeo = f"skopeo inspect --cert-dir {registry['certDir']} --creds \"demo-reader:$(cat {a.registry_password_file})\""
    rows = [
        ("VM", f"{es.get('vmSize')} {es.get('powerState')} {es.get('vmResourceId')}"),
        ("compute", summary["computeId"]),
        ("job", summary["jobName"]),
        ("metrics", ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))),
        ("data", f"{summary['dataFingerprint']} ({summary['dataBlobCount']} blobs)"),
        ("code", summary["codeDigest"]),
        ("model", f"{model}:{summary['modelVersion']}  {summary['modelId']}"),
        ("artifact", artifact),
        ("image", image),
        ("provenance", ", ".join(r.get("digest", "?") for r in summary["referrers"]) or "-"),
        ("registry bytes", f"{summary['bytesUploaded']} uploaded, {summary['bytesReused']} reused"),
        ("Azure requests", f"{counts_line(requests)}; {at_ready['total']} to ect Ready"),
        ("registry storage", registry["storageDir"]),
    ]
    for name, value in rows:
        print(f"{name:>16}  {value}")
    print()
    print("Look further (while the sandbox runs: EDGETRAIN_DEMO_KEEP=1 make demo):")
    print(f"  {kube} get edgetrain -o wide")
    print(f"  {kube} describe trainingrun {run['metadata']['name']}")
    print(f"  kubectl edgetrain --kubeconfig {a.kubeconfig} -n {a.namespace} status")
    print(f"  kubectl edgetrain --kubeconfig {a.kubeconfig} -n {a.namespace} lineage {a.release}")
    print(f"  {skopeo} docker://{image}")
    print(f"  {skopeo} --raw docker://{artifact}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
