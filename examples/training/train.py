"""Train a churn classifier on CSV files read straight from on-premises blob storage.

--data is the URL of a blob "folder" with a read+list SAS, e.g.
https://acct.blob.local.azurestack.external/telemetry/churn/2026-11/?sv=...&sig=...
The data is streamed from the storage account into memory only; nothing but the model,
its metrics and logs is written as output.

Metrics are logged with MLflow, as Azure ML v2 expects: on an Azure ML job the environment
carries MLFLOW_TRACKING_URI and MLFLOW_RUN_ID (the job's own run), and edgetrain reads the
run's latest metrics from the workspace's tracking API.

Every CSV must have a header; the target column (env TARGET_COLUMN, default "churned")
holds 0/1, every other column is a numeric feature.
"""

import argparse
import csv
import io
import json
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import mlflow
import numpy as np
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.metrics import accuracy_score, roc_auc_score


def split_folder_url(folder_url):
    """(root, container, prefix, sas): host-style URLs name the account in the host,
    path-style ones (an IP address or localhost, as emulators use) in the first segment."""
    parts = urllib.parse.urlsplit(folder_url)
    segments = parts.path.lstrip("/")
    root = ""
    host = parts.hostname or ""
    if host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
        account, _, segments = segments.partition("/")
        root = f"/{account}"
    container, _, prefix = segments.partition("/")
    return root, container, urllib.parse.unquote(prefix), parts.query


def list_blobs(folder_url):
    """Yield blob URLs (with the SAS) under the folder, following NextMarker paging."""
    parts = urllib.parse.urlsplit(folder_url)
    root, container, prefix, sas = split_folder_url(folder_url)
    container = f"{root.lstrip('/')}/{container}".lstrip("/")
    marker = ""
    while True:
        query = f"restype=container&comp=list&prefix={urllib.parse.quote(prefix)}&{sas}"
        if marker:
            query += f"&marker={urllib.parse.quote(marker)}"
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{container}", query, ""))
        with urllib.request.urlopen(url) as resp:
            root = ET.fromstring(resp.read())
        for name in root.iter("Name"):
            blob = urllib.parse.quote(name.text)
            yield urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{container}/{blob}", sas, ""))
        marker = root.findtext("NextMarker") or ""
        if not marker:
            return


def read_rows(folder_url, target):
    features, labels, columns = [], [], None
    for url in list_blobs(folder_url):
        if not urllib.parse.urlsplit(url).path.endswith(".csv"):
            continue
        with urllib.request.urlopen(url) as resp:
            reader = csv.DictReader(io.TextIOWrapper(resp, encoding="utf-8"))
            cols = [c for c in reader.fieldnames if c != target]
            if columns is None:
                columns = cols
            elif cols != columns:
                sys.exit(f"{url.split('?')[0]}: columns {cols} differ from {columns}")
            for row in reader:
                features.append([float(row[c]) for c in columns])
                labels.append(int(row[target]))
    if not features:
        sys.exit(f"no CSV rows found under {folder_url.split('?')[0]}")
    return np.array(features, dtype=np.float32), np.array(labels), columns


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="blob folder URL with a read+list SAS")
    parser.add_argument("--model", required=True, help="output folder for the model")
    args = parser.parse_args()
    target = os.environ.get("TARGET_COLUMN", "churned")

    x, y, columns = read_rows(args.data, target)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=7, stratify=y if len(set(y)) > 1 else None
    )
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    proba = model.predict_proba(x_test)[:, 1]
    metrics = {
        "rows": float(len(y)),
        "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
    }
    if len(set(y_test)) > 1:
        metrics["auc"] = float(roc_auc_score(y_test, proba))

    os.makedirs(args.model, exist_ok=True)
    onnx_model = to_onnx(model, x_train[:1], options={id(model): {"zipmap": False}})
    with open(os.path.join(args.model, "model.onnx"), "wb") as f:
        f.write(onnx_model.SerializeToString())
    with open(os.path.join(args.model, "features.json"), "w") as f:
        json.dump({"features": columns, "target": target}, f)

    # start_run() picks up the job's run from MLFLOW_RUN_ID (Azure ML creates it with the job).
    with mlflow.start_run():
        mlflow.log_param("features", len(columns))
        mlflow.log_metrics(metrics)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
