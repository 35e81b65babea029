#!/bin/sh
# Slurm Prolog (runs as root on each allocated node before the job starts; slurm.conf:
# Prolog=/etc/slurm/prolog.d/*). Gives the job a place to report its progress to the fleetwise agent:
#
#   /var/lib/fleetwise/jobs/$SLURM_JOB_ID/          owned by the job's user, mode 0755
#   /var/lib/fleetwise/textfile/job-$SLURM_JOB_ID.prom -> ../jobs/$SLURM_JOB_ID/progress.prom
#
# The job writes progress.prom.tmp in its own directory and renames it to progress.prom (atomic), e.g.
#   fleetwise_job_progress_total{job="$SLURM_JOB_ID",unit="samples"} 51200
# The textfile directory itself stays root-owned, so no job can create or replace another job's file.
# When slurmd passes the job's name, user, account or partition, the prolog also writes (root-owned, so
# the job cannot rewrite its own identity) textfile/jobinfo-$SLURM_JOB_ID.prom:
#   fleetwise_job_info{job="42",user="ada",name="train-resnet",account="ml",partition="gpu",command=""} 1
# It also records the GPUs the job holds on this node, as Princeton's jobstats does: one file per GPU,
#   /run/gpustat/<GPU index>   holding "<job id> <uid>"
# from SLURM_JOB_GPUS (else CUDA_VISIBLE_DEVICES, else GPU_DEVICE_ORDINAL: in the prolog these carry the
# node's own indices). The agent reports every GPU so recorded, used or not (job_gpu, allocation_source
# "prolog"); the epilog removes the files.
# FLEETWISE_ROOT and FLEETWISE_GPUSTAT move the trees (tests). No `set -e`: a failed step must not drain
# the node or fail the job; without its directory the job only loses progress reporting.
set -u

root="${FLEETWISE_ROOT:-/var/lib/fleetwise}"
job="${SLURM_JOB_ID:-}"
uid="${SLURM_JOB_UID:-}"

# Both come from slurmd, but they end up in paths and chown: accept digits only.
case "$job" in ''|*[!0-9]*) echo "fleetwise prolog: bad SLURM_JOB_ID '$job'" >&2; exit 0 ;; esac
case "$uid" in ''|*[!0-9]*) echo "fleetwise prolog: bad SLURM_JOB_UID '$uid'" >&2; exit 0 ;; esac

umask 022
mkdir -p "$root/textfile" "$root/jobs"
chmod 0755 "$root/textfile" "$root/jobs"

dir="$root/jobs/$job"
rm -rf "$dir"  # a requeued job starts clean
mkdir -m 0755 "$dir"
chown "$uid" "$dir"
ln -sfn "../jobs/$job/progress.prom" "$root/textfile/job-$job.prom"

# Label values are user-chosen (the job name): escape \ and " and drop newlines (Prometheus text format).
label() { printf '%s' "$1" | tr -d '\n' | sed 's/\\/\\\\/g; s/"/\\"/g'; }
if [ -n "${SLURM_JOB_NAME:-}${SLURM_JOB_USER:-}${SLURM_JOB_ACCOUNT:-}${SLURM_JOB_PARTITION:-}" ]; then
  info="$root/textfile/jobinfo-$job.prom"
  printf 'fleetwise_job_info{job="%s",user="%s",name="%s",account="%s",partition="%s",command=""} 1\n' \
    "$job" "$(label "${SLURM_JOB_USER:-}")" "$(label "${SLURM_JOB_NAME:-}")" \
    "$(label "${SLURM_JOB_ACCOUNT:-}")" "$(label "${SLURM_JOB_PARTITION:-}")" > "$info.$$" &&
    mv -f "$info.$$" "$info"
fi

gpustat="${FLEETWISE_GPUSTAT:-/run/gpustat}"
gpus="${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-${GPU_DEVICE_ORDINAL:-}}}"
if [ -n "$gpus" ]; then
  mkdir -p "$gpustat" && chmod 0755 "$gpustat"
  for i in $(printf '%s' "$gpus" | tr ',' ' '); do
    case "$i" in ''|*[!0-9]*) echo "fleetwise prolog: GPU '$i' is not an index; not recorded" >&2; continue ;; esac
    printf '%s %s\n' "$job" "$uid" > "$gpustat/$i.$$" && mv -f "$gpustat/$i.$$" "$gpustat/$i"
  done
fi
exit 0
