#!/usr/bin/env python3
"""ONNX scorer: the entrypoint (/bin/serve) of the sandbox's base image `base/tiny:1`.

The model comes from $AZUREML_MODEL_DIR (set by edgetrain to the release's modelPath): its
`model.onnx`, and `features.json` ({"features": [...]}, written by examples/training/train.py)
when rows are sent as objects. Scored with onnx's reference evaluator (which runs the ai.onnx.ml
operators skl2onnx emits for scikit-learn classifiers).

The routes and port are the Azure ML inference server's (azmlinfsrv), so a manifest written
for a production base (examples/deploy/: port 5001, probes on `/`) runs this one unchanged:

  GET  /         200 "Healthy" once the model is loaded (liveness and readiness)
  POST /score    {"rows": [{"tenure": 2, ...} | [2.0, ...], ...]}
                 -> {"predictions": [1, ...], "probabilities": [[0.1, 0.9], ...]}

Listens on $HOST (default 0.0.0.0) and $PORT (default 5001).
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from onnx.reference import ReferenceEvaluator


class Model:
    def __init__(self, model_dir):
        self.evaluator = ReferenceEvaluator(os.path.join(model_dir, "model.onnx"))
        self.input = self.evaluator.input_names[0]
        features = os.path.join(model_dir, "features.json")
        self.features = None
        if os.path.exists(features):
            with open(features) as f:
                self.features = json.load(f)["features"]

    def matrix(self, rows):
        if not isinstance(rows, list) or not rows:
            raise ValueError('"rows" must be a non-empty list')
        out = []
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                if self.features is None:
                    raise ValueError("rows as objects need features.json next to the model")
                missing = [f for f in self.features if f not in row]
                if missing:
                    raise ValueError(f"row {i}: missing features {missing}")
                row = [row[f] for f in self.features]
            if not isinstance(row, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row
            ):
                raise ValueError(f"row {i}: expected numbers or an object of numbers")
            out.append(row)
        width = len(self.features) if self.features else len(out[0])
        if any(len(r) != width for r in out):
            raise ValueError(f"every row needs {width} features")
        return np.array(out, dtype=np.float32)

    def score(self, rows):
        labels, probabilities = self.evaluator.run(None, {self.input: self.matrix(rows)})[:2]
        return {
            "predictions": [int(v) for v in labels],
            "probabilities": [[float(p) for p in r] for r in probabilities],
        }


def handler(model):
    class Handler(BaseHTTPRequestHandler):
        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/":
                self.reply(200, "Healthy")
            else:
                self.reply(404, {"error": f"no route {self.path}"})

        def do_POST(self):
            if self.path != "/score":
                self.reply(404, {"error": f"no route {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if not isinstance(body, dict):
                    raise ValueError('expected {"rows": [...]}')
                self.reply(200, model.score(body.get("rows")))
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                self.reply(400, {"error": str(e)})

    return Handler


def main():
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir:
        sys.exit("AZUREML_MODEL_DIR is not set")
    model = Model(model_dir)
    server = ThreadingHTTPServer(
        (os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "5001"))), handler(model)
    )
    print(f"serving {model_dir} on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
