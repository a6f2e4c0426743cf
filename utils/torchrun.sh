#!/usr/bin/env bash
# Launches this node's share of a training run (run.sh stage 3): one process per GPU under
# torchrun, or a single plain process.
#
# Usage: utils/torchrun.sh [options] SCRIPT [args...]
# e.g.   utils/torchrun.sh --gpus 8 local/train.py --config conf/oskdft.yaml data exp/oskdft
#        utils/torchrun.sh --gpus 4 --num-nodes 2 --node-rank 1 --rdzv-endpoint host0:29400 \
#          local/train.py ...                            (on each node, with its own --node-rank)
#        srun --nodes=2 --ntasks-per-node=1 utils/torchrun.sh --gpus 4 --num-nodes 2 \
#          local/train.py ...                            (Slurm: the same line on every node)
#
# --gpus G starts G processes on this node, one per GPU; --gpus 0 one process on the CPU (gloo
# between nodes). One node with one process: SCRIPT runs as a plain `python SCRIPT args`, with
# no process group. One node with several GPUs: torchrun --standalone, whose rendezvous takes a
# free port (two jobs sharing a node do not meet). Several nodes: torchrun's c10d rendezvous,
# whose store node 0 hosts at --rdzv-endpoint (every node must reach it); c10d numbers the
# processes in the order the nodes join, so rank 0 (the one that writes) may be on any node.
#
# Inside an srun step (SLURM_STEP_ID set), the node rank is the step's SLURM_NODEID and the
# rendezvous host the step's first host (scontrol show hostnames "$SLURM_STEP_NODELIST", the
# allocation's nodes), whatever --node-rank and the host of --rdzv-endpoint say; the port is
# kept, and the Slurm job id is appended to --rdzv-id so that two jobs never share a rendezvous.
# The step must run one task on each of --num-nodes nodes (srun --ntasks-per-node=1).
set -euo pipefail

# Begin configuration section.
gpus=0                        # processes on this node, one per GPU (0: one process on the CPU)
num_nodes=1                   # nodes taking part in the run
node_rank=0                   # this node's rank, 0..num_nodes-1 (under srun: from Slurm)
rdzv_endpoint=127.0.0.1:29400 # c10d rendezvous host:port, on node 0 (under srun: Slurm's host)
rdzv_id=oskdft                # the run's rendezvous id, the same on every node
# End configuration section.
help_message="Usage: $0 [options] SCRIPT [args...]
Runs SCRIPT with its arguments as this node's share of a (multi-node, multi-GPU) run."

utils=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=utils/parse_options.sh
. "$utils/parse_options.sh"
# shellcheck source=utils/jobs.sh
. "$utils/jobs.sh"  # jobs_check_count; log

if [ $# -lt 1 ]; then
  echo "$0: expected SCRIPT [args...] after the options (see $0 --help)" >&2
  exit 1
fi
for opt in gpus num_nodes node_rank; do
  jobs_check_count "${opt//_/-}" "${!opt}"
done
if [ "$num_nodes" -lt 1 ]; then
  echo "$0: --num-nodes must be at least 1" >&2
  exit 1
fi
if ! [[ $rdzv_endpoint =~ ^[^:]+:[0-9]+$ ]]; then
  echo "$0: --rdzv-endpoint expects HOST:PORT, got '$rdzv_endpoint'" >&2
  exit 1
fi

# Inside an srun step, Slurm says where this node stands. A step whose node or task count
# disagrees with --num-nodes would start independent runs, or wait for nodes that never come.
if [ -n "${SLURM_STEP_ID:-}" ]; then
  if [ "${SLURM_STEP_NUM_NODES:-}" != "$num_nodes" ] ||
    [ "${SLURM_STEP_NUM_TASKS:-}" != "$num_nodes" ]; then
    echo "$0: --num-nodes is $num_nodes, but this srun step of Slurm job $SLURM_JOB_ID runs" \
      "${SLURM_STEP_NUM_TASKS:-?} tasks on ${SLURM_STEP_NUM_NODES:-?} nodes: start it with" \
      "srun --nodes=$num_nodes --ntasks-per-node=1" >&2
    exit 1
  fi
  node_rank=$SLURM_NODEID
  # The step's first host (the allocation's, unless the step runs on part of it).
  rdzv_host=$(scontrol show hostnames "$SLURM_STEP_NODELIST" | head -n 1)
  rdzv_endpoint=$rdzv_host:${rdzv_endpoint##*:}
  rdzv_id=$rdzv_id-$SLURM_JOB_ID
elif [ "$num_nodes" -gt 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  echo "$0: --num-nodes $num_nodes inside Slurm job $SLURM_JOB_ID but outside an srun step:" \
    "only this node would start; run it with srun --nodes=$num_nodes --ntasks-per-node=1" >&2
  exit 1
fi
if [ "$node_rank" -ge "$num_nodes" ]; then
  echo "$0: --node-rank $node_rank is not below --num-nodes $num_nodes" >&2
  exit 1
fi

nproc=$((gpus > 0 ? gpus : 1))
if [ "$num_nodes" -eq 1 ] && [ "$nproc" -eq 1 ]; then
  log "one process: python $1"
  exec python "$@"
fi
torchrun=(python -m torch.distributed.run --nproc_per_node="$nproc")  # = torchrun
if [ "$num_nodes" -eq 1 ]; then
  log "one node, $nproc processes (torchrun --standalone)"
  torchrun+=(--standalone)
else
  log "node $node_rank of $num_nodes nodes, $nproc process(es) each, rendezvous" \
    "$rdzv_endpoint id $rdzv_id${SLURM_STEP_ID:+ (from Slurm job $SLURM_JOB_ID)}"
  # c10d ranks the nodes in the order they join (torchrun ignores --node_rank); the node rank
  # says which node hosts the rendezvous store, instead of torchrun guessing it from host names.
  is_host=$([ "$node_rank" -eq 0 ] && echo true || echo false)
  torchrun+=(--nnodes="$num_nodes" --rdzv_backend=c10d --rdzv_endpoint="$rdzv_endpoint"
    --rdzv_id="$rdzv_id" --rdzv_conf="is_host=$is_host")
fi
exec "${torchrun[@]}" "$@"
