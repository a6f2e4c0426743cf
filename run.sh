#!/usr/bin/env bash
set -euo pipefail
# OS-KDFT speaker-verification recipe driver: raw corpus -> scored trials, in numbered stages.
#
#   bash run.sh                                  # the embedded egs/mini recipe, every stage, on CPU
#   bash run.sh --egs voxceleb --gpus 8 --nj 16  # VoxCeleb (edit egs/voxceleb/run.conf first)
#   bash run.sh --stage 3 --stop-stage 3 --systems oskdft --force true   # retrain one system
#
# Paths given as options (--dir, --train-config, --config) are relative to the directory run.sh
# is started from; paths below are relative to the working directory, egs/<egs>/ (or --dir).
#
# stage | name              | inputs                                | outputs                                   | marker
# ------+-------------------+---------------------------------------+-------------------------------------------+---------------------------
#   0   | data preparation  | corpus (egs/<egs>/prepare.py)         | data/<set>/{wav.scp,utt2spk,spk2utt,      | data/.stage0.done
#       |                   |                                       |   trials_*}, data/manifests/<set>_*.jsonl.gz |
#   1   | training windows  | data/manifests, conf/data.yaml        | data/manifests/train_windows.jsonl.gz,    | data/.stage1.done
#       |                   |                                       |   data/{valid,backend}/, aug cut sets     |
#   2   | teacher cache     | train windows, each system's teacher  | exp/teacher_cache/<key>/                  | exp/.stage2.done
#   3   | OS-KDFT training  | train windows, cache, conf/<sys>.yaml | exp/<sys>/{config.yaml,checkpoints,final} | exp/<sys>/.stage3.done
#       |                   |   (+ base:), the teacher's stage 3    |                                           |
#   4   | embeddings        | exp/<sys>/final, data/<set>           | exp/<sys>/embeddings/<set>/xvector*.{ark,scp} | exp/<sys>/.stage4.done
#   5   | scoring, results  | embeddings, trials                    | exp/<sys>/scores/, exp/results.{md,json}  | exp/<sys>/.stage5.done, exp/.results.done
#   6   | export            | exp/<sys>/{final,scores}              | exp/<sys>/export/model.onnx               | exp/<sys>/.stage6.done

cmdline="$0 $*"

# Begin configuration section.
egs=mini                      # recipe under egs/: its run.conf, prepare.py and conf/ define the job
dir=                          # working directory for data/ and exp/ (default: egs/<egs>)
stage=0                       # first stage to run
stop_stage=6                  # last stage to run
nj=2                          # parallel jobs for stages 2 and 4; systems at once in 5 and 6
gpus=0                        # GPUs per node for training (0: one process per node on CPU)
num_nodes=1                   # nodes taking part in training
node_rank=0                   # this node's rank among them (under Slurm: Slurm's)
rdzv_endpoint=127.0.0.1:29400 # torchrun c10d rendezvous host:port: node 0's (under Slurm: its port)
cmd=utils/run_local.sh        # runner of stage 2 and 4 jobs (docs/architecture.md#job-runner)
train_cmd=                    # runner of each training job, stage 3 (default: --cmd's)
train_jobs=1                  # systems trained at once in stage 3 (each waits for its teacher)
systems=                      # systems to train and score (default: run.conf's list)
train_config=                 # train one system from this YAML instead (its stem names exp/<stem>)
override=                     # dotted config overrides for every system, e.g. "optim.epochs=2"
force=false                   # rerun stages even when their done marker matches
seeds=                        # train.seed values ("1 2 3"): stages 2-5 per seed, in exp/seed<k>/
bootstrap=1000                # speaker-bootstrap resamples behind the results table's 95% intervals
# End configuration section.

help_message="Runs the OS-KDFT recipe of egs/<egs>/ from raw corpus to scored trials.
Every variable of egs/<egs>/run.conf is an option too (--prepare-opts, --train-set, --eval-sets,
--aug-sets, ...), and the command line wins over it."

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$root/path.sh"
args=("$@")
# First pass: which recipe (--egs, also from a --config file). The options that only its run.conf
# defines (prepare_opts, train_set, ...) are let through, and applied by the second pass.
parse_options_unknown=skip . "$root/utils/parse_options.sh"
. "$root/utils/log.sh"
. "$root/utils/done.sh"

recipe=$root/egs/$egs
[ -f "$recipe/run.conf" ] || { log "no recipe egs/$egs (missing $recipe/run.conf)"; exit 1; }
# The recipe's corpus paths, set names and system list; it may set any option too (e.g. nj).
# Every recipe's run.conf sets what the template's does: shellcheck reads that one.
# shellcheck source=egs/TEMPLATE/run.conf
. "$recipe/run.conf"
recipe_systems=$systems  # the results table's order
# Second pass: --config files, then the command line, win over run.conf. A value that run.conf
# builds from another (prepare_opts from $musan) is built from run.conf's: give it whole.
. "$root/utils/parse_options.sh" "${args[@]}"
train_cmd=${train_cmd:-$cmd}
# A runner named relative to the repository (the default) must still be found after the cd below.
case $cmd in /*) ;; *) [ -e "$root/${cmd%% *}" ] && cmd="$root/$cmd" ;; esac
case $train_cmd in /*) ;; *) [ -e "$root/${train_cmd%% *}" ] && train_cmd="$root/$train_cmd" ;; esac

if [ -n "$train_config" ]; then
  train_config=$(realpath "$train_config")
  systems=$(basename "$train_config" .yaml)
fi
system_config() {  # the YAML that defines system $1
  if [ -n "$train_config" ]; then echo "$train_config"; else echo "$recipe/conf/$1.yaml"; fi
}

work=${dir:-$recipe}
mkdir -p "$work"
work=$(realpath "$work")
cd "$work"
log "recipe egs/$egs, working in $work, stages $stage..$stop_stage, systems: $systems"

# Multi-seed mode: stages 0-1 run once here; stages 2-5 run once per seed, with train.seed=<k>,
#   in exp/seed<k>/, a working directory of its own (its exp/ holds that seed's systems and
#   results table) whose other entries link to this one's: data/, and whatever a config names
#   by a relative path. Then the table over seeds, exp/results_seeds.{md,json}. No export.
if [ -n "$seeds" ]; then
  again=(bash "$root/run.sh" --egs "$egs" --nj "$nj" --gpus "$gpus" --num-nodes "$num_nodes"
    --node-rank "$node_rank" --rdzv-endpoint "$rdzv_endpoint" --cmd "$cmd" --train-cmd "$train_cmd"
    --systems "$systems" --train-config "$train_config" --force "$force"
    --bootstrap "$bootstrap" --seeds "")
  if [ "$stage" -le 1 ]; then
    "${again[@]}" --dir "$work" --override "$override" --stage "$stage" \
      --stop-stage $((stop_stage < 1 ? stop_stage : 1))
  fi
  if [ "$stop_stage" -ge 2 ] && [ "$stage" -le 5 ]; then
    for k in $seeds; do
      mkdir -p "exp/seed$k"
      for entry in *; do
        if [ -e "$entry" ] && [ "$entry" != exp ]; then
          ln -sfn "../../$entry" "exp/seed$k/$entry"
        fi
      done
      log "seed $k: stages 2-5 in $work/exp/seed$k"
      "${again[@]}" --dir "$work/exp/seed$k" --override "$override train.seed=$k" \
        --stage $((stage > 2 ? stage : 2)) --stop-stage $((stop_stage < 5 ? stop_stage : 5))
    done
  fi
  if [ "$stop_stage" -ge 5 ]; then
    markers=(); for k in $seeds; do markers+=("exp/seed$k/exp/.results.done"); done
    h=$(stage_hash "${markers[@]}" -- "$seeds")
    if is_done exp results_seeds "$h"; then
      cat exp/results_seeds.md
    else
      clear_done exp results_seeds
      python "$root/local/make_seed_results.py" --seeds "$seeds" exp
      mark_done exp results_seeds "$h"
    fi
  fi
  log "Done: stages $stage..$stop_stage of egs/$egs, seeds $seeds"
  exit 0
fi

read -r -a overrides <<<"$override"  # split on blanks, never globbed
override_args=()
[ ${#overrides[@]} -gt 0 ] && override_args=(--override "${overrides[@]}")

# What the done markers hash of the configs, from local/config_inputs.py: the digest of the
# data config and of each system's config as loaded (a comment edit changes neither), how each
# system's teacher runs (cached|online|none), and the stage-3 marker of the system whose model is
# its teacher ("-": none). Stage 0 needs none of it.
data_config=$recipe/conf/data.yaml
declare -A digest teacher_mode teacher_marker
if [ "$stop_stage" -ge 1 ] && [ "$stage" -le 3 ]; then
  specs=(); for sys in $systems; do specs+=("$sys=$(system_config "$sys")"); done
  lines=$(python "$root/local/config_inputs.py" --data-config "$data_config" "${specs[@]}" \
    "${override_args[@]}")
  while read -r kind name fields; do
    if [ "$kind" = data ]; then data_digest=$name; continue; fi
    read -r "digest[$name]" "teacher_mode[$name]" "teacher_marker[$name]" <<<"$fields"
  done <<<"$lines"
fi

# The job runner skips jobs that already succeeded with the same key: the stage's input hash, or a
# fresh key under --force so that every job reruns.
job_key() { if [ "$force" = true ]; then echo "$1-$(date +%s%N)"; else echo "$1"; fi; }

# Stages 5 and 6 run here, not through $cmd: $nj systems at once, sharing this machine's cores
# (unless the caller set the threads).
here_jobs=$((nj < 1 ? 1 : nj))
here_threads=${OMP_NUM_THREADS:-$(($(nproc) / here_jobs > 1 ? $(nproc) / here_jobs : 1))}

# for_each_system FUNCTION N [WAIT]: runs "FUNCTION <sys>" for every system, in the order
# listed, N at a time in the background; a system for which "WAIT <sys>" is true (it may read
# ${running[@]}, the systems running) starts once that is no longer so. After a failure nothing
# new starts, the running ones finish (their markers are valid) and run.sh exits 1.
for_each_system() {
  local run=$1 at_once=$2 wait_for=${3:-} sys pid failed=0
  local -A running=()  # pid -> system
  for sys in $systems; do
    while [ ${#running[@]} -gt 0 ] && { [ ${#running[@]} -ge "$at_once" ] ||
      { [ -n "$wait_for" ] && "$wait_for" "$sys"; }; }; do
      wait -n -p pid "${!running[@]}" || failed=1
      unset "running[$pid]"
    done
    [ "$failed" = 0 ] || break
    "$run" "$sys" &
    running[$!]=$sys
  done
  while [ ${#running[@]} -gt 0 ]; do
    wait -n -p pid "${!running[@]}" || failed=1
    unset "running[$pid]"
  done
  [ "$failed" = 0 ] || exit 1
}

# Stage 0: corpus -> Kaldi data dirs -> validated lhotse manifests.
#   in:  the corpus (prepare_opts in run.conf)  out: data/<set>/, data/manifests/<set>_*.jsonl.gz
if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data preparation"
  # What stage 0 reads of run.conf, not the whole file: its system list is no input here. The
  # code that writes the corpus: prepare.py and the library modules it runs.
  corpus_code=$(python "$root/local/corpus_sources.py" --package-dir "$root/oskdft" \
    "$recipe/prepare.py")
  mapfile -t corpus_code <<<"$corpus_code"
  h=$(stage_hash "$recipe/prepare.py" "${corpus_code[@]}" -- "$prepare_opts" "$train_set" \
    "$eval_sets" "$aug_sets")
  if ! is_done data stage0 "$h"; then
    clear_done data stage0
    # shellcheck disable=SC2086
    python "$recipe/prepare.py" $prepare_opts data
    python "$root/local/prepare_manifests.py" --train-set "$train_set" \
      --eval-sets "$eval_sets" --aug-sets "$aug_sets" data
    mark_done data stage0 "$h"
  fi
fi

# Stage 1: training windows, the held-out validation split, the back-end subset, augmentation sets.
#   in:  data/manifests, conf/data.yaml
#   out: data/manifests/{train_windows,valid_cuts,backend_cuts,aug_*_cuts}.jsonl.gz, data/{valid,backend}/
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: training windows and validation split"
  h=$(stage_hash data/.stage0.done -- "$data_digest")
  if ! is_done data stage1 "$h"; then
    clear_done data stage1
    python "$root/local/make_windows.py" --data-config "$data_config" --train-set "$train_set" \
      --aug-sets "$aug_sets" data
    mark_done data stage1 "$h"
  fi
fi

# Stage 2: run each system's frozen teacher over the clean windows, once per distinct teacher.
#   in:  data/manifests/train_windows.jsonl.gz  out: exp/teacher_cache/<teacher>_L<layers>_.../
#   Systems in online-teacher mode need no cache and are skipped. Inputs: the windows, the configs
#   of the systems that cache, and their teachers' stage-3 markers where a teacher is a system.
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: teacher feature cache"
  # Only the systems whose teacher is cached, and their teachers' training, are its inputs.
  cached=(); inputs=(); teachers=()
  for sys in $systems; do
    [ "${teacher_mode[$sys]}" = cached ] || continue
    cached+=("$sys"); inputs+=("${digest[$sys]}")
    [ "${teacher_marker[$sys]}" = - ] || teachers+=("${teacher_marker[$sys]}")
  done
  h=$(stage_hash data/.stage1.done "${teachers[@]}" -- "$data_digest" "${cached[@]}" "${inputs[@]}")
  if ! is_done exp stage2 "$h"; then
    clear_done exp stage2
    if [ ${#cached[@]} -eq 0 ]; then
      log "no system caches its teacher (online teachers, or no KD)"
    fi
    if [ ${#cached[@]} -gt 0 ]; then
      # One job array for every system: a teacher cache that systems share is written once.
      confs=(); for sys in "${cached[@]}"; do confs+=("$(system_config "$sys")"); done
      args=(--config "${confs[@]}" --data-config "$data_config" "${override_args[@]}")
      $cmd --job-key "$(job_key "$h")" JOB=1:"$nj" "exp/teacher_cache/log/cache.JOB.log" \
        python "$root/local/cache_teacher_feats.py" "${args[@]}" --job JOB --num-jobs "$nj" \
        data exp/teacher_cache
      python "$root/local/merge_teacher_cache.py" "${args[@]}" --num-jobs "$nj" \
        data exp/teacher_cache
    fi
    mark_done exp stage2 "$h"
  fi
fi

# Stage 3: train every system in the order listed, $train_jobs at a time (a later one may distil
#   an earlier one: it waits for that one).
#   in:  data/manifests, exp/teacher_cache, conf/<sys>.yaml
#   out: exp/<sys>/{config.yaml,checkpoints/,final/,log/train.log,metrics.jsonl}
#   utils/torchrun.sh starts one node's share: one CPU process (--gpus 0) or one per GPU under
#   torchrun. $train_cmd runs it as one job on $num_nodes nodes, logged to exp/log/<sys>/train.log
#   (train.node<rank>.log on several nodes; outside exp/<sys>, which --force moves aside):
#   utils/run_local.sh here (multi-node: start this stage on every node, each with its
#   --node-rank), utils/run_slurm.sh as one Slurm job on all of them (run.sh started once, as
#   node 0). The stage's marker alone says a run is done (no --job-key); an
#   interrupted run resumes from its newest checkpoint. A system's inputs: its config as loaded
#   (its YAML, the base: chain, the overrides and the data config: comments do not count), the
#   windows and, when its teacher is another system's model (teacher.path under
#   exp/<teacher>/), that system's marker. train.py refuses to resume a run of another
#   config or other inputs (--force true starts over), so a finished run is never marked current
#   for inputs it was not trained on. The old marker stays during a retrain: train.py never
#   overwrites a run in place.
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  device=cpu
  [ "$gpus" -gt 0 ] && device=cuda
  train_system() {
    local sys=$1 conf h f job_log teacher=() input_hashes=() train=()
    conf=$(system_config "$sys")
    [ "${teacher_marker[$sys]}" = - ] || teacher=("${teacher_marker[$sys]}")
    h=$(stage_hash data/.stage1.done "${teacher[@]}" -- "${digest[$sys]}" "$data_digest")
    is_done "exp/$sys" stage3 "$h" && return 0
    log "Stage 3: training $sys"
    # Not the configs: train.py compares them itself, and names what changed.
    for f in data/.stage1.done "${teacher[@]}"; do input_hashes+=("$f=$(stage_hash "$f")"); done
    train=("$root/utils/torchrun.sh" --gpus "$gpus" --num-nodes "$num_nodes"
      --node-rank "$node_rank" --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "oskdft-$sys"
      "$root/local/train.py" --device "$device" --config "$conf" --data-config "$data_config"
      "${override_args[@]}" --inputs-hash "${input_hashes[@]}" --force "$force" data "exp/$sys")
    job_log=exp/log/$sys/train.log
    [ "$num_nodes" -gt 1 ] && job_log=exp/log/$sys/train.node$node_rank.log
    if ! $train_cmd --gpus "$gpus" --num-nodes "$num_nodes" "$job_log" "${train[@]}"; then
      log "training $sys failed: see $work/$job_log and $work/exp/$sys/log/train.log"
      return 1
    fi
    mark_done "exp/$sys" stage3 "$h"
  }
  teacher_training() {  # true while the system whose model is $1's teacher is training
    local other
    for other in "${running[@]}"; do
      [ "${teacher_marker[$1]}" = "exp/$other/.stage3.done" ] && return 0
    done
    return 1
  }
  for_each_system train_system "$train_jobs" teacher_training
fi

# Stage 4: embeddings (full utterance and the paper's 5 x 3 s crops) of every evaluation set
#   and the validation set, and (full utterances alone: the back ends are fitted on those) of
#   the back-end set, split over $nj jobs, each doing its share for every system.
#   in:  exp/<sys>/final, data/<set>   out: exp/<sys>/embeddings/<set>/xvector{,_crops}.{ark,scp},
#        exp/log/extract.<j>.log
if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  embed_sets="$eval_sets valid backend"
  full_only_sets=backend
  todo=(); hashes=()
  for sys in $systems; do
    h=$(stage_hash "exp/$sys/.stage3.done" data/.stage1.done -- "$embed_sets" "$full_only_sets")
    is_done "exp/$sys" stage4 "$h" && continue
    clear_done "exp/$sys" stage4
    todo+=("$sys"); hashes+=("$h")
  done
  if [ ${#todo[@]} -gt 0 ]; then
    log "Stage 4: embeddings of ${todo[*]} ($embed_sets)"
    # One job array for all of them: job j embeds its share of every system's sets, paying
    # the start-up once.
    sets=(--sets "$embed_sets" --full-only-sets "$full_only_sets")
    $cmd --job-key "$(job_key "$(stage_hash -- "${todo[@]}" "${hashes[@]}")")" JOB=1:"$nj" \
      exp/log/extract.JOB.log python "$root/local/extract_embeddings.py" "${sets[@]}" \
      --job JOB --num-jobs "$nj" data exp "${todo[@]}"
    python "$root/local/merge_embeddings.py" "${sets[@]}" --num-jobs "$nj" data exp "${todo[@]}"
    for i in "${!todo[@]}"; do mark_done "exp/${todo[$i]}" stage4 "${hashes[$i]}"; done
  fi
fi

# Stage 5: score every trial list with every back end, calibrate on the validation trials,
#   compute EER / minDCF / Cllr; then the results table over every system under exp/ whose
#   scores are current (run.conf's order first), so a rerun naming fewer systems keeps the others,
#   with $bootstrap resamples of a bootstrap over speakers behind its intervals.
#   in:  exp/<sys>/embeddings, data/<set>/trials_*, data/<set>/utt2spk
#   out: exp/<sys>/scores/, exp/results.md, exp/results.json, exp/log/<sys>/score.log
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  score_system() {
    local sys=$1 h
    # By the rule make_results.py checks to pick the table's systems.
    h=$(python "$root/local/scores_hash.py" --eval-sets "$eval_sets" "exp/$sys")
    is_done "exp/$sys" stage5 "$h" && return 0
    log "Stage 5: scoring $sys"
    clear_done "exp/$sys" stage5
    mkdir -p "exp/log/$sys"
    if ! python "$root/local/score_trials.py" --eval-sets "$eval_sets" data "exp/$sys" \
      >"exp/log/$sys/score.log" 2>&1; then
      log "scoring $sys failed: see $work/exp/log/$sys/score.log"
      tail -n 20 "exp/log/$sys/score.log" >&2
      return 1
    fi
    mark_done "exp/$sys" stage5 "$h"
  }
  OMP_NUM_THREADS=$here_threads for_each_system score_system "$here_jobs"
  # make_results.py picks the table's systems from every system's stage-4 and stage-5 markers,
  # so those markers are the table's inputs.
  markers=()
  for marker in exp/*/.stage4.done exp/*/.stage5.done; do
    [ -f "$marker" ] && markers+=("$marker")
  done
  h=$(stage_hash "${markers[@]}" -- "$eval_sets" "$recipe_systems" "$bootstrap")
  if is_done exp results "$h"; then
    cat exp/results.md
  else
    clear_done exp results
    python "$root/local/make_results.py" --order "$recipe_systems" --eval-sets "$eval_sets" \
      --data-dir data --resamples "$bootstrap" exp
    mark_done exp results "$h"
  fi
fi

# Stage 6: export each system's student + ECAPA to ONNX (waveform -> embedding) with a parity
#   check against PyTorch on real utterances.
#   in:  exp/<sys>/final, exp/<sys>/scores (calibration), data/<first eval set>
#   out: exp/<sys>/export/{model.onnx,model.int8.onnx,meta.json,calibration.json},
#        exp/log/<sys>/export.log
if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  export_system() {
    local sys=$1 h
    # The export carries stage 5's calibration and back end, so a rescoring re-exports.
    h=$(stage_hash "exp/$sys/.stage3.done" "exp/$sys/.stage5.done")
    is_done "exp/$sys" stage6 "$h" && return 0
    log "Stage 6: export $sys"
    clear_done "exp/$sys" stage6
    mkdir -p "exp/log/$sys"
    if ! python "$root/local/export_model.py" --parity-set "data/${eval_sets%% *}" \
      "exp/$sys/final" "exp/$sys/export" >"exp/log/$sys/export.log" 2>&1; then
      log "export of $sys failed: see $work/exp/log/$sys/export.log"
      tail -n 20 "exp/log/$sys/export.log" >&2
      return 1
    fi
    mark_done "exp/$sys" stage6 "$h"
  }
  OMP_NUM_THREADS=$here_threads for_each_system export_system "$here_jobs"
fi

log "Done: stages $stage..$stop_stage of egs/$egs"
