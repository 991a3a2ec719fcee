#!/usr/bin/env bash
# Checks the controller image scripts/build-image.sh makes, with independent tools: skopeo reads
# the layout, umoci unpacks it, and the binary runs inside the unpacked root filesystem
# (chroot, as the image's user) — so the image's own C runtime and files are enough.
#
#   scripts/image-test.sh [BINARY]     (default target/debug/edgetrain-controller)
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/debug/edgetrain-controller}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }
pass() { echo "image-test: ok: $*"; }

ref=$(scripts/build-image.sh --binary "$binary" --out "$work/a" --tag test | tail -n1)
[ "$ref" = "$work/a/oci:test" ] || fail "build-image printed '$ref'"

# The same inputs give the same image, byte for byte (timestamps from git, not the clock).
scripts/build-image.sh --binary "$binary" --out "$work/b" --tag test >/dev/null
manifest_a=$(skopeo inspect --raw "oci:$work/a/oci:test" | sha256sum | cut -d' ' -f1)
manifest_b=$(skopeo inspect --raw "oci:$work/b/oci:test" | sha256sum | cut -d' ' -f1)
[ "$manifest_a" = "$manifest_b" ] || fail "two builds differ: $manifest_a vs $manifest_b"
pass "reproducible (manifest sha256:$manifest_a)"

config=$(skopeo inspect --config "oci:$work/a/oci:test")
python3 - "$config" <<'EOF' || fail "image config: see above"
import json, sys
c = json.loads(sys.argv[1])
cfg = c["config"]
checks = {
    "linux/amd64": (c["os"], c["architecture"]) == ("linux", "amd64"),
    "non-root user 65532 (the chart's runAsUser)": cfg.get("User") == "65532:65532",
    "entrypoint is the controller": cfg.get("Entrypoint") == ["/usr/local/bin/edgetrain-controller"],
    "version label": cfg.get("Labels", {}).get("org.opencontainers.image.version") == "test",
    "one layer": len(c["rootfs"]["diff_ids"]) == 1,
}
bad = [k for k, ok in checks.items() if not ok]
if bad:
    sys.exit("config fails: " + ", ".join(bad) + "\n" + json.dumps(c, indent=1))
EOF
pass "config: linux/amd64, user 65532, entrypoint, labels"

umoci unpack --image "$work/a/oci:test" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA bundle in the image"
grep -q 'BEGIN CERTIFICATE' "$rootfs/etc/ssl/certs/ca-certificates.crt" || fail "CA bundle holds no certificate"
[ -f "$rootfs/usr/share/doc/libc6/copyright" ] || fail "glibc's license is not in the image"
[ "$(stat -c %u "$rootfs/usr/local/bin/edgetrain-controller")" = 0 ] || fail "binary not owned by root"
pass "CA bundle, licenses, ownership"

# Inside the image's root only: a missing library fails here, the host's cannot stand in.
chroot=$(command -v chroot) || fail "chroot (coreutils) is missing"
help=$(env -i "$chroot" --userspec=65532:65532 "$rootfs" /usr/local/bin/edgetrain-controller --help) ||
  fail "the controller does not start inside the image"
grep -q -- '--max-concurrent-reconciles' <<<"$help" || fail "--help inside the image: $help"
pass "the controller runs inside the image as 65532"
