#!/usr/bin/env bash
# Installs the Debian packages the tests talk to, only those that are missing:
# a real InfluxDB, Prometheus (+ promtool), node_exporter (benchmark anchor),
# Chromium and its driver (dashboard tests, the report's static charts), poppler-utils (report tests),
# Alertmanager (alert tests), and the shared libraries WeasyPrint's wheel loads for the report's PDF (Pango,
# HarfBuzz subsetting, fonts).
set -euo pipefail
declare -A need=(
    [influxd]=influxdb
    [prometheus]=prometheus
    [promtool]=prometheus
    [prometheus-node-exporter]=prometheus-node-exporter
    [chromium]=chromium
    [chromedriver]=chromium-driver
    [pdftotext]=poppler-utils
    [pdftoppm]=poppler-utils
    [prometheus-alertmanager]=prometheus-alertmanager
)
declare -A libs=(
    [libpango-1.0.so.0]=libpango-1.0-0
    [libpangoft2-1.0.so.0]=libpangoft2-1.0-0
    [libharfbuzz-subset.so.0]=libharfbuzz-subset0
    [libfontconfig.so.1]=libfontconfig1
)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# read the linker cache once (grep -q on a pipe would end ldconfig early, and pipefail would count that)
cache=$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)
for lib in "${!libs[@]}"; do
    grep -q "/$lib\$" <<<"$cache" || missing+=("${libs[$lib]}")
done
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages (run as root to install): ${missing[*]}" >&2
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
# The packages start their services on install; tests start their own instances on free ports.
for svc in influxdb prometheus prometheus-node-exporter prometheus-alertmanager; do
    systemctl stop "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done
