#!/usr/bin/env bash
# Installs the Debian packages the tests talk to, only those that are missing:
# a real InfluxDB, Prometheus (+ promtool), node_exporter (benchmark anchor),
# Chromium and its driver (dashboard tests), poppler-utils (report tests), Alertmanager (alert tests).
set -euo pipefail
declare -A need=(
    [influxd]=influxdb
    [prometheus]=prometheus
    [promtool]=prometheus
    [prometheus-node-exporter]=prometheus-node-exporter
    [chromium]=chromium
    [chromedriver]=chromium-driver
    [pdftotext]=poppler-utils
    [prometheus-alertmanager]=prometheus-alertmanager
)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
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
