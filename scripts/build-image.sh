#!/usr/bin/env bash
# Builds the controller's container image without a container engine: an OCI image layout
# holding the binary, the C runtime it links against (glibc and libgcc, copied from the build
# host's own Debian packages, so the versions are the ones it was linked with), the system CA
# bundle (Azure endpoints are verified against it) and a non-root user. Push it with
# `skopeo copy oci:<layout>:<tag> docker://<registry>/<repository>:<tag>`.
#
#   scripts/build-image.sh [--binary PATH] [--out DIR] [--tag TAG]
#
# Defaults: target/dist/edgetrain-controller (the `dist` profile: release with LTO), target/image, the workspace version.
# Timestamps come from the last commit (SOURCE_DATE_EPOCH overrides), never the clock.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/dist/edgetrain-controller
out=target/image
tag=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
license=$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -n1)
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "build-image: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

die() { echo "build-image: $*" >&2; exit 1; }
for tool in umoci dpkg-query ldd; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-tools.sh installs it)"
done
[ -x "$binary" ] || die "$binary is not an executable (cargo build --profile dist --bin edgetrain-controller)"
# ELF magic, 64-bit class, e_machine 0x3e (x86-64): the image is linux/amd64.
[ "$(od -An -tx1 -N5 "$binary" | tr -d ' ')" = 7f454c4602 ] &&
  [ "$(od -An -tx1 -j18 -N2 "$binary" | tr -d ' ')" = 3e00 ] ||
  die "$binary is not an x86-64 ELF binary"
[ "$(id -u)" = 0 ] || die "run as root: the image's files must be owned by root (uid 0)"

epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs"/{usr/local/bin,etc/ssl/certs,tmp}
chmod 1777 "$rootfs/tmp"

# Every shared object the binary loads must come from a package, so its license ships too.
libs=$(ldd "$binary" | awk '/=>/ {print $3} /ld-linux/ {print $1}' | sort -u)
pkgs=""
for lib in $libs; do
  # dpkg records /lib paths; with merged /usr the file may be found only under one of them.
  pkg=$({ dpkg-query -S "$lib" || dpkg-query -S "$(readlink -f "$lib")"; } 2>/dev/null |
    head -n1 | cut -d: -f1) || die "$lib belongs to no Debian package"
  pkgs="$pkgs $pkg"
done
pkgs=$(echo "$pkgs" | tr ' ' '\n' | sort -u | grep -v '^$')
for pkg in $pkgs; do
  # Shared objects and the loader only (no gconv modules, tools or docs), plus the license.
  dpkg-query -L "$pkg" | grep -E '/(lib|lib64|usr/lib|usr/lib64)/.*\.so[.0-9]*$|/ld-linux' |
    while read -r f; do
      # Real directories in the image (the host's /lib may be a link into /usr); links kept.
      [ -e "$f" ] || continue
      mkdir -p "$rootfs$(dirname "$f")"
      cp -P "$f" "$rootfs$f"
    done
  doc=/usr/share/doc/$pkg/copyright
  if [ -f "$doc" ]; then
    mkdir -p "$rootfs$(dirname "$doc")"
    cp "$doc" "$rootfs$doc"
  fi
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt is missing (apt-get install ca-certificates)"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
install -m 0755 "$binary" "$rootfs/usr/local/bin/edgetrain-controller"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
chown -R 0:0 "$rootfs"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

rm -rf "$out"
mkdir -p "$out"
layout=$out/oci
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --image "$layout:$tag" "$work/bundle" >/dev/null
rm -rf "$work/bundle/rootfs"
mv "$rootfs" "$work/bundle/rootfs"
umoci repack --image "$layout:$tag" --history.created "$created" \
  --history.created_by "scripts/build-image.sh" "$work/bundle"
umoci config --image "$layout:$tag" --created "$created" --history.created "$created" \
  --os linux --architecture amd64 --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/edgetrain-controller --config.workingdir / \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.label org.opencontainers.image.title=edgetrain-controller \
  --config.label org.opencontainers.image.version="$tag" \
  --config.label org.opencontainers.image.revision="$revision" \
  --config.label org.opencontainers.image.licenses="$license" \
  --config.label org.opencontainers.image.created="$created"
umoci gc --layout "$layout"
echo "$layout:$tag"
