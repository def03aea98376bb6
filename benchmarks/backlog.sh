#!/usr/bin/env bash
# The CPU backlog of issues 12 and 13, in the order the notes fixed, for one of two shards:
#
#     git worktree add /work/exp HEAD             # a checkout nothing edits while it runs
#     cd /work/exp && RESULTS=/work/main/benchmarks/ground_truth nohup nice -n 10 bash benchmarks/backlog.sh 0 &
#     cd /work/exp && RESULTS=/work/main/benchmarks/ground_truth nohup nice -n 10 bash benchmarks/backlog.sh 1 &
#
# Every step resumes (a finished search or training is skipped, an interrupted one continues from its
# checkpoint), so running it again continues where it stopped. Every step had finished by
# 2026-12-02 01:12 UTC (results committed): running it again re-checks and re-writes pages only.
# Run it from a checkout that nothing edits while it runs: the processes load code and presets as
# they go. RESULTS is the folder of tiny.json and searches-tiny.json that the results go to (default:
# this checkout's), PY the Python
# (default: the venv beside RESULTS's checkout, else this checkout's).
#
# 1. The replication fixed on docs/benchmarks/search-vs-random.md (c09c0d6): 30 new searches with the
#    default fitness, then 30 with NASWOT. Read once when all 60 are in, never before.
# 2. The ground truth to 8 seeds per architecture (issue 12's reliability target).
# 3. NASWOT with random search, 20 searches (a test fixed on search-vs-random.md): on both shards
#    before the next step, which one process runs for about 1.5 hours.
# 4. Shard 0: the estimators of ranking.md measured again (their cache is now in the repository).
# 5. Table 5 on the ground truth (fixed on search-vs-random.md): evolution, random search, guided.
# 6. A second table of 32 fresh architectures, 8 seeds (fixed on ranking.md: estimators on
#    architectures none was chosen on), in its own work folder.
# 7. Shard 0: the estimators on it, into their own cache (its page to /tmp, unread: read it by hand
#    once the table is complete, as ranking.md's plan says).
# 8. Shard 0: the demo study's remaining row (demo-controls.md's plan: the paper's search on
#    tiny-truth, 10 seeds; each demo uses both workers, so one process runs it).
set -euo pipefail
K=${1:?usage: backlog.sh K, K = 0 or 1: the shard of 2 this process runs}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RESULTS=${RESULTS:-$HERE/benchmarks/ground_truth}
PY=${PY:-$(cd "$RESULTS/../.." && pwd)/.venv/bin/python}
[ -x "$PY" ] || PY=$HERE/.venv/bin/python
cd "$HERE"
SVR=("$PY" benchmarks/search_vs_random.py --results "$RESULTS/searches-tiny.json" --table "$RESULTS/tiny.json"
     --set train.holdout_val=true --shard "$K/2")
step() { echo "== $(date -u '+%F %T') shard $K: $*"; }

step "replication: the default fitness"
"${SVR[@]}" --search-seeds 10
step "replication: NASWOT"
"${SVR[@]}" --set search.fitness=naswot --supernet-seeds 1 --search-seeds 50
step "ground truth to 8 seeds"
"$PY" benchmarks/ground_truth.py --table "$RESULTS/tiny.json" --seeds 8 --shard "$K/2"
step "NASWOT with random search (60 evaluations): the test fixed on search-vs-random.md"
"${SVR[@]}" --set search.fitness=naswot --policies random --set search.evaluations=60 --supernet-seeds 1 --search-seeds 20
if [ "$K" = 0 ]; then  # one process: ranking.py is not sharded
  step "the estimators of ranking.md, measured again into the repository's cache (the /tmp one was lost)"
  "$PY" benchmarks/ranking.py --cache "$RESULTS/ranking-estimates.json" --table "$RESULTS/tiny.json" \
      --supernet-steps 300 900 3000 --out "$RESULTS/../../docs/benchmarks/ranking.md"
fi
step "Table 5: evolution (250 evaluations)"
"${SVR[@]}" --policies evolution --set search.population=25 --set search.generations=10 --search-seeds 2
step "Table 5: random search (150 evaluations)"
"${SVR[@]}" --policies random --set search.evaluations=150 --search-seeds 2
step "Table 5: guided (60 evaluations)"
"${SVR[@]}" --policies guided --set search.evaluations=60 --search-seeds 2
step "a second table: 32 fresh architectures, 8 seeds (ranking.md's plan)"
"$PY" benchmarks/ground_truth.py --table "$RESULTS/tiny-fresh.json" --archs 32 --seeds 8 --arch-seed 2027 \
    --work /tmp/gt-fresh --shard "$K/2"
if [ "$K" = 0 ]; then
  step "the estimators on the fresh table (page to /tmp, unread)"
  "$PY" benchmarks/ranking.py --table "$RESULTS/tiny-fresh.json" --cache "$RESULTS/ranking-estimates-fresh.json" \
      --only params macs naswot naswot-mask holdout:pq holdout-900:pool-pq --supernet-steps 300 900 \
      --out /tmp/ranking-fresh-unread.md > /dev/null
  step "the demo study's paper-search row (demo-controls.md; page to /tmp, unread)"
  PYTHONPATH="$HERE" "$PY" benchmarks/demo_controls.py --seeds 10 --set search.fitness=pq --set search.policy=path-priority \
      --results "$RESULTS/../demo-controls.json" --out /tmp/demo-controls-unread.md > /dev/null
fi
step "done"
