"""Peer of `edgetrain-bench fingerprint`: Microsoft's azure-storage-blob SDK (the version pinned
in crates/sandbox-azure/tests/python/requirements.txt) lists the container with the same
fields as ours (name, size, Content-MD5, ETag), sorts the listing and hashes it in the record
format of crates/azure/src/blob/fingerprint.rs, so both digests must agree.

usage: fingerprint_sdk.py ACCOUNT_URL CONTAINER CA_PEM; the account key in BENCH_ACCOUNT_KEY.
Prints {"sha256": ..., "blobs": N}.
"""

import base64
import hashlib
import json
import os
import sys

from azure.storage.blob import ContainerClient


def field(h, b):
    h.update(len(b).to_bytes(8, "big"))
    h.update(b)


def main():
    account_url, container, ca = sys.argv[1:4]
    account = account_url.rstrip("/").rsplit("/", 1)[1]
    client = ContainerClient(
        account_url,
        container,
        credential={"account_name": account, "account_key": os.environ["BENCH_ACCOUNT_KEY"]},
        connection_verify=ca,
    )
    rows = []
    for b in client.list_blobs():
        md5 = b.content_settings.content_md5
        etag = b.etag if b.etag.startswith('"') else f'"{b.etag}"'
        rows.append((b.name, b.size, base64.b64encode(md5).decode() if md5 else "", etag))
    # Code-point order, as the service lists and as ours checks.
    rows.sort(key=lambda r: r[0])
    h = hashlib.sha256()
    for name, size, md5, etag in rows:
        field(h, name.encode())
        h.update(size.to_bytes(8, "big"))
        field(h, md5.encode())
        field(h, etag.encode())
    print(json.dumps({"sha256": h.hexdigest(), "blobs": len(rows)}))


main()
