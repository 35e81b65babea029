#!/bin/sh
# The weekly capacity report, run by systemd (deploy/systemd/fleetwise-report.service) or cron
# (deploy/cron/fleetwise-report) on Mondays; installed as /opt/fleetwise/bin/fleetwise-weekly-report.
#
# Builds `fleetwise report` for the last complete ISO week into $FLEETWISE_REPORT_DIR/YYYY-Www/ (written
# to a hidden .YYYY-Www.partial first and renamed, so a reader never sees half a report), then keeps the
# newest $FLEETWISE_REPORT_KEEP week directories and deletes older ones. Only names of the form YYYY-Www
# are ever deleted. A failed report leaves the older ones alone and exits with fleetwise's status.
#
#   FLEETWISE               the fleetwise executable (default /opt/fleetwise/.venv/bin/fleetwise)
#   FLEETWISE_REPORT_DIR    where the reports go (default /var/lib/fleetwise/reports)
#   FLEETWISE_REPORT_KEEP   how many weekly reports to keep (default 12)
#   FLEETWISE_STORE_URL     --store URL (default: fleetwise's own)
#   FLEETWISE_REPORT_STATE  --state DIR (default: fleetwise's own)
#   FLEETWISE_REPORT_ALERTS_STATE  --alerts-state DIR (the alert evaluator's; default: fleetwise's own)
#   FLEETWISE_REPORT_FLEET_NAME    --fleet-name NAME (on the first page)
#   FLEETWISE_REPORT_PDF    1 = also a PDF (--pdf)
#   FLEETWISE_REPORT_WEEK   build this week (YYYY-Www) instead of the last complete one
#   FLEETWISE_REPORT_NOW    a date standing for "now" (tests; anything GNU date -d reads)
# Credentials are never arguments: fleetwise reads FLEETWISE_INFLUXDB_TOKEN_FILE etc. from the environment.
set -eu
name=fleetwise-weekly-report
fleetwise="${FLEETWISE:-/opt/fleetwise/.venv/bin/fleetwise}"
dir="${FLEETWISE_REPORT_DIR:-/var/lib/fleetwise/reports}"
keep="${FLEETWISE_REPORT_KEEP:-12}"
case "$keep" in
  ''|*[!0-9]*|0) echo "$name: FLEETWISE_REPORT_KEEP must be a whole number of at least 1, not '$keep'" >&2; exit 2 ;;
esac

# The last complete ISO week is the one of the last Sunday before today (%u: Monday 1 .. Sunday 7).
now="${FLEETWISE_REPORT_NOW:-now}"
today=$(date -u -d "$now" +%F) || { echo "$name: FLEETWISE_REPORT_NOW '$now' is not a date" >&2; exit 2; }
# (date arithmetic on the bare day: "06:00 -1 days" would read "-1" as a time zone)
week="${FLEETWISE_REPORT_WEEK:-$(date -u -d "$today -$(date -u -d "$today" +%u) days" +%G-W%V)}"
if ! printf '%s' "$week" | grep -Eq '^[0-9]{4}-W[0-9]{2}$'; then
  echo "$name: FLEETWISE_REPORT_WEEK must look like 2026-W48, not '$week'" >&2; exit 2
fi

mkdir -p "$dir"
partial="$dir/.$week.partial"
rm -rf "$partial"
mkdir "$partial"
set -- report --week "$week" --out "$partial"
[ -n "${FLEETWISE_STORE_URL:-}" ] && set -- "$@" --store "$FLEETWISE_STORE_URL"
[ -n "${FLEETWISE_REPORT_STATE:-}" ] && set -- "$@" --state "$FLEETWISE_REPORT_STATE"
[ -n "${FLEETWISE_REPORT_ALERTS_STATE:-}" ] && set -- "$@" --alerts-state "$FLEETWISE_REPORT_ALERTS_STATE"
[ -n "${FLEETWISE_REPORT_FLEET_NAME:-}" ] && set -- "$@" --fleet-name "$FLEETWISE_REPORT_FLEET_NAME"
[ "${FLEETWISE_REPORT_PDF:-0}" = 1 ] && set -- "$@" --pdf
echo "$name: building $week into $dir/$week" >&2
status=0
"$fleetwise" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  rm -rf "$partial"
  echo "$name: fleetwise report failed (exit $status); older reports kept" >&2
  exit "$status"
fi
rm -rf "${dir:?}/$week"
mv "$partial" "$dir/$week"

# Keep the newest $keep: YYYY-Www names sort in time order.
ls -1 "$dir" | grep -E '^[0-9]{4}-W[0-9]{2}$' | sort -r | tail -n "+$((keep + 1))" | while read -r old; do
  echo "$name: removing $dir/$old (keeping the newest $keep)" >&2
  rm -rf "${dir:?}/$old"
done
exit 0
