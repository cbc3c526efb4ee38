#!/usr/bin/env bash
# Builds the tickstream container image from a release binary: the linux
# binary for this machine's architecture (scripts/release.sh), the host's CA
# bundle and a passwd/group line for the non-root user, FROM scratch with
# deploy/Containerfile. Nothing is pulled from a registry.
#
# Usage: ./scripts/image.sh [VERSION]    (default v0.0.0-<commit>)
# Environment: IMAGE (default localhost/tickstream) names the image; it is
# tagged IMAGE:VERSION, and IMAGE:latest too unless LATEST=0.
# Needs podman (Debian package podman).
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:-v0.0.0-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}
image=${IMAGE:-localhost/tickstream}
if ! command -v podman >/dev/null 2>&1; then
	echo "image.sh: podman is not installed (apt-get install podman)" >&2
	exit 1
fi
ca=/etc/ssl/certs/ca-certificates.crt
if [[ ! -s $ca ]]; then
	echo "image.sh: no CA bundle at $ca (apt-get install ca-certificates)" >&2
	exit 1
fi
arch=$(go env GOARCH)
TARGETS=linux/$arch ./scripts/release.sh "$version" >/dev/null

ctx=$(mktemp -d "${TMPDIR:-/tmp}/tickstream-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "dist/$version/tickstream-$version-linux-$arch" "$ctx/tickstream"
cp "$ca" "$ctx/ca-certificates.crt"
echo 'tickstream:x:10001:10001:tickstream:/:/sbin/nologin' >"$ctx/passwd"
echo 'tickstream:x:10001:' >"$ctx/group"
cp deploy/Containerfile "$ctx/Containerfile"

tags=(--tag "$image:$version")
[[ ${LATEST:-1} == 0 ]] || tags+=(--tag "$image:latest")
podman build --pull=never --arch "$arch" --label "org.opencontainers.image.version=$version" \
	"${tags[@]}" --file "$ctx/Containerfile" "$ctx" >&2
echo "$image:$version"
