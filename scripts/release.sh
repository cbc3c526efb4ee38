#!/usr/bin/env bash
# Builds the release binaries of tickstream into dist/VERSION/:
# linux, darwin and windows on amd64 and arm64, static (CGO off), the
# version stamped (`tickstream version` prints it), and SHA256SUMS.
# Nothing it builds is committed (dist/ is ignored).
#
# Usage: ./scripts/release.sh VERSION      (e.g. v1.4.0)
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:-}
if [[ ! $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
	echo "usage: $0 VERSION (a semantic version such as v1.4.0, got '${version}')" >&2
	exit 2
fi
out=dist/$version
rm -rf "$out"
mkdir -p "$out"
targets=${TARGETS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64"}
for t in $targets; do
	os=${t%/*} arch=${t#*/}
	name=tickstream-$version-$os-$arch
	[[ $os == windows ]] && name+=.exe
	echo "release.sh: $name"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.buildVersion=$version" -o "$out/$name" ./cmd/tickstream
done
cp LICENSE THIRD_PARTY_NOTICES.md "$out/"
(cd "$out" && sha256sum tickstream-* > SHA256SUMS)
echo "release.sh: $out"
ls -l "$out"
