#!/usr/bin/env bash
# One evaluation split over the nodes of a Slurm job array, then merged into one run.
#
#   export RUN=qwen25vl-$(date +%F) MODEL=vllm:Qwen/Qwen2.5-VL-7B-Instruct TASKS=mmmu_val,mme
#   JOB=$(sbatch --parsable --export=ALL --array=0-3 benchmarks/examples/slurm_array.sh)
#   sbatch --export=ALL --dependency=afterany:${JOB} --gpus-per-node=0 benchmarks/examples/slurm_array.sh merge
#
# Each array task runs shard SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT (a stable split
# by task and document: every document lands in exactly one shard) on one node, with one
# xdist worker per GPU; the merge job joins the shard runs (every task re-aggregated from
# all its samples: intervals, comparisons, gates and stability as in one run) and their
# response caches (afterany: a shard with a failed sample exits 1, and its samples still
# merge). RESULTS and CACHE must be on a filesystem every node sees. Outside Slurm
# the same script runs one shard on this machine (SLURM_ARRAY_TASK_ID/COUNT default to 0/1).
#SBATCH --job-name=pytest-lmms
#SBATCH --nodes=1
#SBATCH --gpus-per-node=8
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail

RUN=${RUN:-pytest-lmms}
MODEL=${MODEL:-vllm:Qwen/Qwen2.5-VL-7B-Instruct}
TASKS=${TASKS:-mmmu_val,mme}
SUITE=${SUITE:-benchmarks/}          # the folder of task YAMLs
RESULTS=${RESULTS:-results}
CACHE=${CACHE:-.lmms-cache}
WORKERS=${WORKERS:-8}                # xdist workers on each node: one per GPU group
GPUS_PER_WORKER=${GPUS_PER_WORKER:-1}  # 0: no GPU pinning (API models, CPU runs)
EXTRA=${EXTRA:-}                     # more pytest arguments, e.g. "--baseline=results/old"

if [[ "${1:-shard}" == "merge" ]]; then
    shards=("${RESULTS}/${RUN}-shard"*)
    caches=()
    for shard in "${shards[@]}"; do
        caches+=(--cache-from "${CACHE}/${shard##*-}")
    done
    exec pytest-lmms merge "${shards[@]}" --out "${RESULTS}/${RUN}" --cache "${CACHE}/merged" "${caches[@]}"
fi

SHARD=${SLURM_ARRAY_TASK_ID:-0}
SHARDS=${SLURM_ARRAY_TASK_COUNT:-1}
pin=()
if [[ "${GPUS_PER_WORKER}" != "0" ]]; then
    pin=(--lmms-gpus-per-worker "${GPUS_PER_WORKER}")
fi
# shellcheck disable=SC2086  # EXTRA is a list of arguments
exec python -m pytest "${SUITE}" --model="${MODEL}" --tasks="${TASKS}" \
    -n "${WORKERS}" "${pin[@]}" \
    --lmms-shard="${SHARD}/${SHARDS}" \
    --lmms-output="${RESULTS}" --lmms-run-name="${RUN}-shard${SHARD}" \
    --lmms-cache="${CACHE}/shard${SHARD}" \
    -q ${EXTRA}
