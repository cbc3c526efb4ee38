#!/usr/bin/env bash
# Refreshes the dashboard's charting library from npm (TradingView's
# lightweight-charts, Apache-2.0): the standalone production build is
# committed under dashboard/static/vendor so the binary needs no network.
# Usage: ./scripts/update-charts.sh [version]   (default: the pinned one)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-5.2.1}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "lightweight-charts@$version" >/dev/null && tar xzf lightweight-charts-*.tgz)
cp "$tmp/package/dist/lightweight-charts.standalone.production.js" dashboard/static/vendor/
cp "$tmp/package/LICENSE" dashboard/static/vendor/LICENSE-lightweight-charts
# The page names the version in the script's URL: browsers cache vendor/ for a year.
sed -i "s|lightweight-charts.standalone.production.js?v=[^\"]*|lightweight-charts.standalone.production.js?v=$version|" dashboard/static/index.html
go generate ./dashboard   # the .br and .gz forms
echo "lightweight-charts $version → dashboard/static/vendor/"
