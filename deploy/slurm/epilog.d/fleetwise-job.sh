#!/bin/sh
# Slurm Epilog (runs as root on each node after the job ends; slurm.conf: Epilog=/etc/slurm/epilog.d/*).
# Removes what the prolog made for the job, so the agent stops exporting its progress series.
set -u

root="${FLEETWISE_ROOT:-/var/lib/fleetwise}"
job="${SLURM_JOB_ID:-}"
case "$job" in ''|*[!0-9]*) echo "fleetwise epilog: bad SLURM_JOB_ID '$job'" >&2; exit 0 ;; esac

rm -f "$root/textfile/job-$job.prom" "$root/textfile/jobinfo-$job.prom"
rm -rf "$root/jobs/$job"
exit 0
