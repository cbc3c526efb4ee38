#!/usr/bin/env bash
# The one test command (CI runs it through .ci/run).
#
# 1. Installs what the tests need when it is missing, from Debian packages:
#    it prints the list first, uses sudo when not root (or, without sudo or
#    apt-get, says what to install and stops). It starts no service and
#    stops none that it did not start: tests run private instances.
# 2. Checks the repository: gofmt, `go mod tidy` leaves no diff, no
#    compiled binary is tracked, the binary builds for darwin and windows.
# 3. Vets and runs every test with the race detector.
#
# Usage: ./scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests run, and the Debian package that provides it. Add a line
# here for a new tool, found in tests with internal/tooltest (a test that
# needs it skips naming the package, and fails once this script has set
# TICKSTREAM_REQUIRE_TOOLS below).
requirements=(
	"redis-server redis-server" # internal/redistest (redis-cli comes with it)
	"redis-cli redis-tools"
	"chromium chromium"          # internal/browsertest
	"nginx nginx-light"          # internal/nginxtest
	"python3 python3"            # the README's Python client example
	"node nodejs"                # internal/esnode: the JavaScript clients
	"npm npm"
	"prlimit util-linux"         # fanout/transport: the open-file limit test
	"podman podman"              # deploy: builds the container image
	"podman-compose podman-compose"  # deploy: reads compose.yaml
	"update-ca-certificates ca-certificates"  # deploy: the image's CA bundle
	"systemd-analyze systemd"    # deploy: verifies tickstream.service
	"promtool prometheus"        # deploy, node: the alert rules and the metrics scrape (promtool check)
)

have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }

need=()
for r in "${requirements[@]}"; do
	read -r cmd pkg <<<"$r"
	have "$cmd" || [[ " ${need[*]} " == *" $pkg "* ]] || need+=("$pkg")
done

# services lists the packages' own system services that are running now.
services() {
	local s
	for s in redis-server nginx; do
		if command -v service >/dev/null 2>&1 && service "$s" status >/dev/null 2>&1; then
			echo "$s"
		fi
	done
}

if ((${#need[@]})); then
	echo "test.sh: missing tools; installing Debian packages: ${need[*]}"
	sudo=()
	if [[ $(id -u) != 0 ]]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "test.sh: not root and no sudo: install them first, as root:" >&2
			echo "  apt-get install --no-install-recommends ${need[*]}" >&2
			exit 1
		fi
		sudo=(sudo)
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "test.sh: no apt-get here: install the programs that provide ${need[*]}, then run me again" >&2
		exit 1
	fi
	before=$(services)
	# A policy-rc.d answering 101 keeps the packages' services from starting
	# at install (Debian's documented switch); one that exists is left alone.
	policy=/usr/sbin/policy-rc.d
	ours=""
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod +x "$policy"
		ours=1
		trap '"${sudo[@]}" rm -f "$policy"' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	if [[ -n $ours ]]; then
		"${sudo[@]}" rm -f "$policy"
		trap - EXIT
	fi
	# Stop only what this install started (if a service started anyway).
	for s in $(services); do
		if ! grep -qx "$s" <<<"$before"; then
			echo "test.sh: stopping $s, started by its package's install just now"
			"${sudo[@]}" service "$s" stop >/dev/null 2>&1 || true
		fi
	done
fi

echo "test.sh: gofmt, go mod tidy, tracked binaries, cross builds"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
	echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
if ! go mod tidy -diff; then
	echo "go.mod or go.sum is not tidy: run go mod tidy and commit the result" >&2
	exit 1
fi
# Compiled binaries (ELF, Mach-O, PE) do not belong in git: build outputs
# are ignored in .gitignore.
binaries=()
while IFS= read -r -d '' f; do
	[[ -f $f ]] || continue
	case $(head -c 4 "$f" | od -An -tx1 | tr -d ' \n') in
	7f454c46 | cffaedfe | cefaedfe | feedfacf | feedface | 4d5a*) binaries+=("$f") ;;
	esac
done < <(git ls-files -z 2>/dev/null)
if ((${#binaries[@]})); then
	echo "compiled binaries are tracked: ${binaries[*]}; git rm --cached them" >&2
	exit 1
fi
for target in darwin/arm64 windows/amd64; do
	GOOS=${target%/*} GOARCH=${target#*/} go build -o /dev/null ./cmd/tickstream ||
		{ echo "tickstream does not build for $target" >&2; exit 1; }
done

go vet ./...

# The tests run with a private TMPDIR: every server they start (redis,
# nginx, chromium, node, the tickstream binary) has its files there, so
# what still refers to it after the suite is a process a test left behind.
testtmp=$(mktemp -d "${TMPDIR:-/tmp}/tickstream-test.XXXXXX")
rc=0
# Every tool is installed now: a test that would skip for want of one fails.
export TICKSTREAM_REQUIRE_TOOLS=1
TMPDIR=$testtmp go test -race -count=1 -timeout 20m "$@" ./... || rc=$?

leftovers() {
	local p pid
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		if { tr '\0' ' ' <"$p/cmdline"; readlink "$p/exe" "$p/cwd" "$p"/fd/*; } 2>/dev/null | grep -qF "$testtmp"; then
			echo "$pid"
		fi
	done
}
left=$(leftovers)
if [[ -n $left ]]; then
	echo "test.sh: the tests left these processes running (stopping them now):" >&2
	ps -o pid,ppid,pgid,args -p "$(tr '\n' ',' <<<"$left" | sed 's/,$//')" >&2 || true
	kill -9 $left 2>/dev/null || true
	((rc)) || rc=1
fi
rm -rf "$testtmp"
exit "$rc"
