#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing
# (Debian packages), then vets and runs every test with the race detector.
# Usage: ./scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v python3 >/dev/null 2>&1 || need+=(python3)
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
if ((${#need[@]})); then
	echo "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	# The packages' own services are not ours: tests start private instances.
	(service redis-server stop || pkill -x redis-server || true) >/dev/null 2>&1
	(service nginx stop || pkill -x nginx || true) >/dev/null 2>&1
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
	echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m "$@" ./...
