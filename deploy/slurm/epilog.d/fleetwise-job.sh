#!/bin/sh
# Slurm Epilog (runs as root on each node after the job ends; slurm.conf: Epilog=/etc/slurm/epilog.d/*).
# Removes what the prolog made for the job, so the agent stops exporting its progress series, and the
# job's GPU records (/run/gpustat/<index>, the files whose job id is this job's: another job that got the
# GPU since keeps its record).
set -u

root="${FLEETWISE_ROOT:-/var/lib/fleetwise}"
job="${SLURM_JOB_ID:-}"
case "$job" in ''|*[!0-9]*) echo "fleetwise epilog: bad SLURM_JOB_ID '$job'" >&2; exit 0 ;; esac

rm -f "$root/textfile/job-$job.prom" "$root/textfile/jobinfo-$job.prom"
rm -rf "$root/jobs/$job"
gpustat="${FLEETWISE_GPUSTAT:-/run/gpustat}"
for f in "$gpustat"/*; do
  [ -f "$f" ] || continue
  read -r owner _rest < "$f" 2>/dev/null || continue
  [ "$owner" = "$job" ] && rm -f "$f"
done
exit 0
