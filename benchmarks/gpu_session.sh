#!/usr/bin/env bash
# One device call: install the carried wheels, then run one part of the GPU work.
#   bash benchmarks/gpu_session.sh check|bench|study SPEC [WORKERS] [PREVIOUS_TAR]
#   bash benchmarks/gpu_session.sh validate      # graph/stacked/sampling GPU tests, then bench_gpu_train.py (BENCH_ARGS)
#   bash benchmarks/gpu_session.sh profile       # profile_gpu_steps.py (fp32/tf32/bf16, compiled fields) and bench_scan.py --members
#   bash benchmarks/gpu_session.sh speed         # bench_gpu_train.py in tf32 and fp32 with compiled step fields (captured, stacked, plain loops)
#   bash benchmarks/gpu_session.sh tests         # the GPU tests of the fast paths (captured steps, groups, kernels, graph solves, threads)
#   bash benchmarks/gpu_session.sh sampling      # profile_sampling.py: samples/s and the kernels of one Mamba draw (ROWS, COMPILE)
#   bash benchmarks/gpu_session.sh next          # GPU tests, then profile_gpu_steps of the groups (BEFORE=old stacked.py: a baseline in the same call)
#   bash benchmarks/gpu_session.sh tiles         # the Mamba groups' steps per Triton-scan backward launch shape (SCAN_BWD), then Mamba sampling at 16,384 rows
#   bash benchmarks/gpu_session.sh scanab        # the study's heaviest groups in threads, the scan's backward shapes (SCAN_BWD) taking turns
#   bash benchmarks/gpu_session.sh nll           # bench_nll.py: exact NLL of a Mamba run, eager against graph-replayed solves, alone and in threads
#   bash benchmarks/gpu_session.sh final         # the architectures study with runs in stacked groups of up to 64
#   bash benchmarks/gpu_session.sh smoke         # <= 2 min: the batched evaluation's GPU tests, then a small study's cells evaluated alone and in groups
#   bash benchmarks/gpu_session.sh flagship      # `time flowstudy study studies/architectures.toml` end to end (resumes; STATE=prefix of a previous call's state)
#   bash benchmarks/gpu_session.sh threads       # GPU tests, then bench_concurrent_groups.py: groups one after another, in threads, in processes
#   bash benchmarks/gpu_session.sh scan          # Mamba GPU tests (Triton scan against float64, torch and fused), then bench_scan.py
#   bash benchmarks/gpu_session.sh subspace      # bench_subspace_sampling.py: eigenbasis against plain-field sampling
#   bash benchmarks/gpu_session.sh eigen         # bench_subspace_sampling.py --train: captured steps in eigen- against data coordinates
#   bash benchmarks/gpu_session.sh bg SPEC[,SPEC...] [WORKERS] [PREVIOUS_TAR[,TAR...]]   # start studies in the background (setsid), one after the other
#   bash benchmarks/gpu_session.sh snap NAME[,NAME...] [UNTIL_S]   # wait until the background studies end or UNTIL_S, then copy their state
# (bg + snap: a study longer than one call runs on while the machine is held; each call's snap copies
#  the state out, and a fresh machine resumes from the last copy given as PREVIOUS_TAR.
#  MAMBA_BACKEND=triton|fused|auto sets the Mamba layers' backend for a study or bg study whose
#  cells are all Mamba networks: the spec is copied with `model = {backend = ...}` in its [base];
#  STUDY_PRECISION=fp32|tf32|bf16 likewise sets `precision` in the copy's [base].)
# (study: GROUP_SIZE=N trains runs that share a network in stacked groups of up to N; EXECUTOR=threads
#  runs its tasks in threads of one process, a CUDA stream each, instead of worker processes;
#  SCAN_BWD=BLOCK_D:WARPS:SPLITS:ROWS sets the Triton scan's backward launch shape there.)
# Outputs go to $OUT (logs, Markdown tables, a tarball of the study directory without checkpoints).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
wheels=$(ls .gpu/*.whl .whl/*.whl 2>/dev/null)
[ -n "$wheels" ] && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $wheels >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
python3 -c "import torch, mamba_ssm; print('torch', torch.__version__, torch.cuda.get_device_name(), 'mamba_ssm', mamba_ssm.__version__)"
part=$1
# with_backend SPEC: SPEC, or with MAMBA_BACKEND set a copy in /tmp/specs whose [base] model table
# sets the Mamba layers' backend (printed path)
with_backend() {
  local spec=$1 name
  name=$(basename "$spec" .toml)
  [ -z "${MAMBA_BACKEND:-}" ] && [ -z "${STUDY_PRECISION:-}" ] && { echo "$spec"; return; }
  mkdir -p /tmp/specs
  python3 -c "
import sys, re
text, backend, precision = open(sys.argv[1]).read(), sys.argv[3], sys.argv[4]
if backend:
    text = re.sub(r'^\[base\]\n', '[base]\nmamba_backend_placeholder\n', text, count=1, flags=re.M)
    if re.search(r'^model = \{', text, flags=re.M):  # merge into the base's model table
        text = text.replace('mamba_backend_placeholder\n', '')
        text = re.sub(r'^model = \{', 'model = {backend = \"' + backend + '\", ', text, count=1, flags=re.M)
    else:
        text = text.replace('mamba_backend_placeholder', 'model = {backend = \"' + backend + '\"}')
if precision:
    text = re.sub(r'^\[base\]\n', '[base]\nprecision = \"' + precision + '\"\n', text, count=1, flags=re.M)
open(sys.argv[2], 'w').write(text)
" "$spec" "/tmp/specs/$name.toml" "${MAMBA_BACKEND:-}" "${STUDY_PRECISION:-}"
  echo "/tmp/specs/$name.toml"
}
case "$part" in
  check)
    python3 -m flowstudy.cli info 2>&1 | tail -12
    timeout 200 python3 -m pytest -q -m gpu tests -p no:cacheprovider -o addopts="" 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
    ;;
  bench)
    timeout 150 python3 benchmarks/bench_mamba_gpu.py --out "$OUT/mamba" 2>&1 | tail -30
    timeout 250 python3 benchmarks/bench_train.py --device cuda --steps 300 --out "$OUT/train" 2>&1 | tail -12
    ;;
  study)
    spec=$(with_backend "$2"); workers=${3:-8}; prev=${4:-}
    name=$(basename "$spec" .toml)
    if [ -n "$prev" ] && [ -f "$prev" ]; then mkdir -p /tmp/studies && tar -xzf "$prev" -C /tmp/studies; fi
    # -k: a threaded study stops its runs resumably on SIGTERM (last.pt per member), which can outlast the call
    timeout -k 15 ${STUDY_TIMEOUT:-480} python3 -c "
import os, sys, time
from flowstudy.study import run_study
from flowstudy.models.ssm import triton_scan
if __name__ == '__main__':
    if os.environ.get('SCAN_BWD'):  # the threads executor's runs share this process
        triton_scan.BACKWARD_SHAPE = triton_scan.parse_backward_shape(os.environ['SCAN_BWD'])
    tic = time.perf_counter()
    rows = run_study(sys.argv[1], sys.argv[2], executor=sys.argv[5] or None, workers=int(sys.argv[3]), progress=False, group_size=int(sys.argv[4]))
    print(len(rows), 'cells done in', round(time.perf_counter() - tic, 1), 's; group_size', sys.argv[4], 'executor', sys.argv[5] or 'spec')
" "$spec" "/tmp/studies/$name" "$workers" "${GROUP_SIZE:-1}" "${EXECUTOR:-}" > /tmp/study.log 2>&1  # no pipe: orphaned workers would hold it open past the timeout
    tail -40 /tmp/study.log
    cat "/tmp/studies/$name/group_training.json" 2>/dev/null
    # Transfer copy: metadata without checkpoints; samples cut to 200 rows in float16 (enough for
    # the report's PCA figure), split so that each file stays under the transfer limits.
    tar --exclude='*.pt' --exclude='*.npy' -czf "$OUT/$name-meta.tgz" -C /tmp/studies "$name"
    (cd /tmp/studies && python3 -c "
import glob, numpy as np
for f in sorted(glob.glob('$name/cells/*/samples.npy')):
    np.save(f.replace('samples.npy', 'samples-preview.npy'), np.load(f)[:200].astype(np.float16))
" && find "$name" -name samples-preview.npy | sort > /tmp/preview-list && split -l 30 /tmp/preview-list /tmp/previews. \
      && for part in /tmp/previews.*; do tar -czf "$OUT/$name-samples-${part##*.}.tgz" -T "$part"; done)
    ls -la "$OUT"
    ;;
  validate)
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    timeout ${TEST_TIMEOUT:-150} python3 -m pytest -q -m gpu tests/train/test_graph.py tests/train/test_stacked.py tests/test_graph_solver.py \
      tests/train/test_subspace_run.py -p no:cacheprovider -o addopts="" 2>&1 | tee "$OUT/gpu_tests.log" | tail -30
    mkdir -p "$OUT/train" && python3 -m pip list 2>/dev/null | grep -i -E "^(torch|triton|mamba)" > "$OUT/train/versions.txt"
    timeout ${BENCH_TIMEOUT:-240} python3 benchmarks/bench_gpu_train.py ${BENCH_ARGS:-} --out "$OUT/train" 2>&1 | tail -14
    ;;
  scan)
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    timeout ${TEST_TIMEOUT:-180} python3 -m pytest -q -m gpu tests/models/test_triton_scan.py tests/models/test_mamba_gpu.py \
      -p no:cacheprovider -o addopts="" 2>&1 | tee "$OUT/gpu_tests_mamba.log" | tail -15
    timeout ${BENCH_TIMEOUT:-120} python3 benchmarks/bench_scan.py --out "$OUT/scan" 2>&1 | tail -30
    ;;
  bg)  # SPEC may name several studies, comma-separated: they run one after the other
    specs=$2; workers=${3:-4}; prev=${4:-}
    mkdir -p /tmp/studies /tmp/specs
    if [ -n "$prev" ]; then for tarball in ${prev//,/ }; do [ -f "$tarball" ] && tar -xzf "$tarball" -C /tmp/studies; done; fi
    run_specs=()
    for spec in ${specs//,/ }; do
      spec=$(with_backend "$spec")
      run_specs+=("$spec")
    done
    setsid nohup python3 -c "
import sys, time
from pathlib import Path
from flowstudy.study import run_study
if __name__ == '__main__':
    for spec in sys.argv[3:]:
        tic = time.perf_counter()
        rows = run_study(spec, '/tmp/studies/' + Path(spec).stem, workers=int(sys.argv[1]), progress=False, group_size=int(sys.argv[2]))
        print(Path(spec).stem, len(rows), 'cells done in', round(time.perf_counter() - tic, 1), 's; group_size', sys.argv[2], flush=True)
" "$workers" "${GROUP_SIZE:-1}" "${run_specs[@]}" > /tmp/bg.log 2>&1 < /dev/null &
    echo "started ${run_specs[*]} in the background (pid $!)"
    ;;
  snap)  # NAMES: the studies to copy, comma-separated
    names=$2; until=${3:-560}
    while [ "$SECONDS" -lt "$until" ] && pgrep -f "run_study" > /dev/null; do sleep 5; done
    pgrep -f "run_study" > /dev/null && echo "still running at ${SECONDS} s" || echo "finished"
    grep -v "^\s*$" /tmp/bg.log | tail -8
    for name in ${names//,/ }; do
      [ -d "/tmp/studies/$name" ] || continue
      echo "$name: cells with results: $(ls /tmp/studies/$name/cells/*/evaluation.json 2>/dev/null | wc -l)"
      tar --exclude='*.pt' --exclude='*.npy' -czf "$OUT/$name-meta.tgz" -C /tmp/studies "$name"
    done
    cp /tmp/bg.log "$OUT/bg.log"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
    ;;
  subspace)  # eigenbasis against plain-field sampling of the subspace recipes' networks
    timeout ${TEST_TIMEOUT:-120} python3 -m pytest -q -m gpu tests/train/test_subspace_run.py -p no:cacheprovider -o addopts="" 2>&1 | tail -5
    timeout ${BENCH_TIMEOUT:-240} python3 benchmarks/bench_subspace_sampling.py --device cuda --rows ${ROWS:-65536} --only mlp unet 2>&1 | tee "$OUT/subspace_sampling.md"
    timeout ${BENCH_TIMEOUT:-240} python3 benchmarks/bench_subspace_sampling.py --device cuda --rows ${ROWS_TOKENS:-8192} --only dit mamba-tiny 2>&1 | tee -a "$OUT/subspace_sampling.md"
    ;;
  eigen)  # the recipes' captured training steps in the base's eigen-coordinates against data coordinates
    timeout ${BENCH_TIMEOUT:-120} python3 benchmarks/bench_subspace_sampling.py --device cuda --train ${STEPS:-100} --repeats 3 ${ONLY:-} 2>&1 | tee "$OUT/eigen_training.md"
    ;;
  all)  # validate, then the study in the time left of one 600 s call
    BENCH_TIMEOUT=${BENCH_TIMEOUT:-170} bash benchmarks/gpu_session.sh validate
    left=$(( ${TOTAL:-575} - SECONDS )); echo "study gets ${left} s"
    GROUP_SIZE=64 STUDY_TIMEOUT=$(( left > 60 ? left : 60 )) bash benchmarks/gpu_session.sh study studies/architectures.toml ${WORKERS:-12} 2>&1 | tail -25
    ;;
  profile)  # where captured steps spend their GPU time; fp32 / tf32 / bf16; compiled step fields; stacked scans
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    timeout ${TEST_TIMEOUT:-60} python3 -m pytest -q -m gpu tests/train/test_precision.py -p no:cacheprovider -o addopts="" 2>&1 | tail -4
    timeout ${BENCH_TIMEOUT:-330} python3 benchmarks/profile_gpu_steps.py --cases ${CASES:-mlp:1 unet:1 mlp:64 unet:9 dit:3 mamba:9:triton mamba:3:triton} \
      --precision fp32 tf32 bf16 --top 10 --out "$OUT/profile" 2>&1 | grep -v "^USDT\|^STAGE" | tail -40
    timeout ${COMPILE_TIMEOUT:-150} python3 benchmarks/profile_gpu_steps.py --cases ${COMPILE_CASES:-mlp:1 unet:1} --precision fp32 tf32 \
      --compile default --top 10 --out "$OUT/profile-compile" 2>&1 | grep -v "^USDT\|^STAGE" | tail -12
    timeout ${SCAN_TIMEOUT:-60} python3 benchmarks/bench_scan.py --members "8,256;32,64" --out "$OUT/scan-members" 2>&1 | tail -12
    ;;
  speed)  # the trainer's columns in tf32 and fp32, with compiled step fields, beside the plain loop (one process each)
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    timeout ${TEST_TIMEOUT:-90} python3 -m pytest -q -m gpu tests/train/test_precision.py tests/train/test_stacked.py tests/models/test_mamba_backends.py \
      -p no:cacheprovider -o addopts="" 2>&1 | tail -4
    timeout ${TF32_TIMEOUT:-300} python3 benchmarks/bench_gpu_train.py --precision tf32 --columns plain captured compiled stacked --stacked-step vectorised \
      --only mlp unet dit "mamba (triton scan)" --out "$OUT/train-tf32" 2>&1 | grep -v "^USDT\|^STAGE" | tail -8
    timeout ${FP32_TIMEOUT:-170} python3 benchmarks/bench_gpu_train.py --precision fp32 --columns plain captured compiled \
      --only mlp unet dit --out "$OUT/train-fp32" 2>&1 | grep -v "^USDT\|^STAGE" | tail -7
    ;;
  tests)  # the GPU tests of the captured steps, groups, kernels, graph solves, threads and the cudagraphs helpers
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    # -v: a run cut by the timeout still names the tests that passed
    timeout ${TEST_TIMEOUT:-280} python3 -m pytest -v -m gpu ${TESTS:-tests/train/test_stacked.py tests/train/test_graph.py tests/train/test_precision.py \
      tests/train/test_subspace_run.py tests/models/test_triton_conv.py tests/models/test_triton_scan.py tests/test_graph_solver.py \
      tests/study/test_threads.py tests/flows/test_subspace.py tests/metrics/test_metric_likelihood.py tests/test_cudagraphs.py \
      tests/models/test_gluon_scan.py} -p no:cacheprovider -o addopts="" \
      --durations=8 > "$OUT/gpu_tests.log" 2>&1
    grep -c PASSED "$OUT/gpu_tests.log"; grep -E "(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -10; tail -12 "$OUT/gpu_tests.log"
    ;;
  sampling)  # where graph-replayed Mamba sampling (eigenbasis, 50 NFE) spends its GPU time; the scan forward's launch shapes side by side
    [ "${SCAN_AB:-1}" != 0 ] && timeout ${SCAN_TIMEOUT:-90} python3 benchmarks/bench_scan.py --forward-shapes --out "$OUT/scan-forward" 2>&1 | grep -v "^USDT\|^STAGE" | tail -5
    timeout ${BENCH_TIMEOUT:-240} python3 benchmarks/profile_sampling.py --arch ${ARCH:-mamba} --rows ${ROWS:-16384} --compile ${COMPILE:-default} \
      --scan-fwd ${SCAN_FWD:-default 16} ${SAMPLING_ARGS:---ops} --top ${TOP:-25} --out "$OUT/sampling" > "$OUT/profile_sampling.log" 2>&1
    grep "^|" "$OUT/profile_sampling.log"; grep -i error "$OUT/profile_sampling.log" | tail -3
    ;;
  next)  # what the CPU-side work since the last GPU call changed (GPU tests, then the profiled group steps beside BEFORE_TREE's)
    bash benchmarks/gpu_session.sh tests
    # the same cases as the last profile (benchmarks/gpu-2026-11-28/profile_gpu_steps.json), then, for a baseline in the same call,
    # an earlier tree run with its own script (BEFORE_TREE=.gpu/before, from `git archive <commit> | tar -x -C .gpu/before`)
    timeout ${PROFILE_TIMEOUT:-200} python3 benchmarks/profile_gpu_steps.py --cases mlp:64 unet:9 dit:3 mamba:3:triton mamba:9:triton --precision tf32 --top 4 \
      --out "$OUT/profile-flat" 2>&1 | grep -v "^USDT\|^STAGE" | tail -14
    timeout ${PROFILE_TIMEOUT:-200} python3 benchmarks/profile_gpu_steps.py --cases mlp:64 unet:9 dit:3 mamba:3:triton mamba:9:triton --precision tf32 --top 4 \
      --torch-update --out "$OUT/profile-torch-update" 2>&1 | grep -v "^USDT\|^STAGE\|^{" | tail -8
    if [ -n "${BEFORE_TREE:-}" ]; then
      (cd "$BEFORE_TREE" && PYTHONPATH="$PWD/src:/tmp/site" timeout ${PROFILE_TIMEOUT:-200} python3 benchmarks/profile_gpu_steps.py \
        --cases mlp:64 unet:9 dit:3 mamba:3:triton mamba:9:triton --precision tf32 --top 4 --out "$OUT/profile-before" 2>&1 \
        | grep -v "^USDT\|^STAGE" | tail -14)
    fi
    ;;
  threads)  # groups side by side in threads of one process (a CUDA stream each) against processes
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    timeout ${TEST_TIMEOUT:-150} python3 -m pytest -q -m gpu tests/train/test_stacked.py tests/train/test_graph.py tests/train/test_precision.py \
      tests/test_graph_solver.py -p no:cacheprovider -o addopts="" > "$OUT/gpu_tests.log" 2>&1; tail -4 "$OUT/gpu_tests.log"
    grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -10
    timeout ${BENCH_TIMEOUT:-300} python3 benchmarks/bench_concurrent_groups.py --jobs ${JOBS:-mamba:3 mamba-tied:3 mamba-merged:3 dit:3} \
      --steps ${STEPS:-600} --precision ${PRECISION:-tf32} --out "$OUT/concurrent" 2>&1 | grep -v "^USDT\|^STAGE" | tail -12
    ;;
  evalcheck)  # the architectures study with short training (STEPS, default 300) in 15 threads: its evaluation phase
    # (graph sampling, exact NLL) beside other threads' captures, and GPU memory; the results' summary
    # (NLL_GRAPH=1: each NLL batch's solve replayed as a CUDA graph, [study] nll_graph)
    mkdir -p /tmp/specs && python3 - "${STEPS:-300}" "${NLL_GRAPH:-}" <<'PY'
import re, sys
text = open("studies/architectures.toml").read()
text = re.sub(r"^\[base\]\n", f"[base]\nsteps = {sys.argv[1]}\nprecision = \"tf32\"\n", text, count=1, flags=re.M)
if sys.argv[2]:
    text = re.sub(r"^nll = ", "nll_graph = true\nnll = ", text, count=1, flags=re.M)
open("/tmp/specs/architectures.toml", "w").write(text)
PY
    (while sleep 15; do cp /tmp/studies/architectures/group_training.json /tmp/studies/architectures/results.sqlite "$OUT/" 2>/dev/null; done) & copier=$!
    timeout -k 15 ${STUDY_TIMEOUT:-240} python3 -c "
import sys, time
from flowstudy.study import run_study
tic = time.perf_counter()
rows = run_study('/tmp/specs/architectures.toml', '/tmp/studies/architectures', executor='threads', workers=15, progress=False, group_size=64)
print(len(rows), 'cells done in', round(time.perf_counter() - tic, 1), 's')
" > "$OUT/evalcheck.log" 2>&1
    kill $copier; cp /tmp/studies/architectures/group_training.json /tmp/studies/architectures/results.sqlite "$OUT/" 2>/dev/null
    grep -c "ran out of GPU memory" "$OUT/evalcheck.log"; grep -v "^\s" "$OUT/evalcheck.log" | tail -4 | cut -c1-300
    python3 - <<'PY'
import collections, json, sqlite3
rows = sqlite3.connect("/tmp/studies/architectures/results.sqlite").execute("select status, payload, started_at, finished_at, attempts from cells").fetchall()
print("cells", len(rows), collections.Counter(r[0] for r in rows), "span s", round(max(r[3] for r in rows) - min(r[2] or r[3] for r in rows), 1))
errors = collections.Counter(json.loads(r[1]).get("error", "")[:160] for r in rows if r[0] == "failed")
for error, n in errors.most_common(5):
    print(n, error)
done = [json.loads(r[1]) for r in rows if r[0] == "done"]
for key in ("sample_seconds", "eval_seconds", "cell_seconds"):
    values = sorted(d.get(key, 0) for d in done)
    print(key, "median", round(values[len(values) // 2], 1) if values else None, "max", round(values[-1], 1) if values else None)
PY
    ;;
  tiles)  # the study's Mamba groups (L = 8) with the scan's backward launch shapes BLOCK_D:WARPS:SPLITS:ROWS
    timeout ${PROFILE_TIMEOUT:-260} python3 benchmarks/profile_gpu_steps.py --cases mamba:9:triton mamba:3:triton --precision tf32 --top 3 \
      --scan-bwd ${SCAN_BWD:-default 4:1:4:4 4:1:8:4 4:1:8:2 2:1:8:4 8:2:4:4 8:2:8:2 16:2:4:4 16:4:8:4 4:1:16:4} \
      --out "$OUT/profile-tiles" 2>&1 | grep "^|"
    python3 -c "import json; [print(r.get('scan_bwd', 'default'), r.get('scan_calls')) for r in json.load(open('$OUT/profile-tiles/profile_gpu_steps.json'))[:2]]"
    timeout ${BENCH_TIMEOUT:-150} python3 benchmarks/bench_gpu_train.py --only "mamba (triton scan)" --columns captured sampling --quick \
      --sample-rows 16384 --compile-velocity default --out "$OUT/sampling" > "$OUT/sampling.log" 2>&1; grep -v "^USDT\|^STAGE" "$OUT/sampling.log" | tail -8
    ;;
  scanab)  # backward launch shapes compared where the study runs them: its heaviest groups side by side in threads
    timeout ${BENCH_TIMEOUT:-400} python3 benchmarks/bench_concurrent_groups.py --jobs ${JOBS:-mamba:9 mamba:3 mamba-tied:3 mamba-merged:3 dit:3} \
      --modes threads --steps ${STEPS:-600} --precision tf32 --scan-bwd ${SCAN_BWD:-default 4:1:8:2} --repeats ${REPEATS:-2} \
      --out "$OUT/scanab" 2>&1 | grep "^|"
    ;;
  nll)  # exact held-out NLL of a Mamba recipe run, eager against graph-replayed solves, alone and in threads
    timeout ${BENCH_TIMEOUT:-400} python3 benchmarks/bench_nll.py --arch ${ARCH:-mamba} --threads ${THREADS:-4} ${NLL_ARGS:-} --out "$OUT/nll" 2>&1 \
      | grep -v "^USDT\|^STAGE" | tail -16
    ;;
  smoke)  # the batched evaluation on CUDA: its GPU tests, then mlp and mamba (2 seeds, 50 steps) evaluated cell by cell and in groups
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    timeout ${TEST_TIMEOUT:-50} python3 -m pytest -q -m gpu tests/study/test_group_eval.py -p no:cacheprovider -o addopts="" > "$OUT/smoke_tests.log" 2>&1
    tail -3 "$OUT/smoke_tests.log"; grep -E "^(FAILED|ERROR)" "$OUT/smoke_tests.log" | head -5
    timeout -k 10 ${BENCH_TIMEOUT:-110} python3 benchmarks/profile_evaluation.py --archs ${ARCHS:-mlp mamba} --seeds 0 1 --steps ${STEPS:-50} \
      --out /tmp/smoke > "$OUT/smoke_profile.log" 2>&1
    grep -v "^USDT\|^STAGE" "$OUT/smoke_profile.log" | tail -14; cp /tmp/smoke/profile_evaluation.md "$OUT/" 2>/dev/null
    ;;
  flagship)  # the architectures study end to end (training, evaluation, NLL, report) from an empty folder, with its wall time.
    # The folder stays on the machine (/tmp/flagship): a second call on the same (warm) machine resumes it; a fresh machine
    # resumes from STATE, the path prefix of a previous call's $OUT/flagship-state.tgz.* parts (carried back into the tree).
    # Leaves in $OUT: flagship.log (the command's output and `time`), status.json, flagship-report.tgz (report.md/html,
    # results.csv/jsonl, figures, status, spec, group_training.json), flagship-eval.md (evaluation seconds per network),
    # flagship-state.tgz.aa, .ab... (the folder without checkpoints: results store, cells' files, logs).
    spec=${SPEC:-studies/architectures.toml}; name=$(basename "$spec" .toml); dir=/tmp/flagship/$name
    if [ ! -d "$dir" ] && [ -n "${STATE:-}" ] && ls "$STATE".* >/dev/null 2>&1; then
      mkdir -p /tmp/flagship && cat "$STATE".* | tar -xz -C /tmp/flagship && echo "resuming from $STATE"
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    # what the command, the evaluation and the report import beyond torch (carry wheels in .whl/ for any it names)
    python3 -c "
import importlib.util as u
missing = [m for m in ('typer', 'rich', 'sklearn', 'scipy', 'matplotlib') if u.find_spec(m) is None]
print('missing Python packages (carry their wheels):', ', '.join(missing)) if missing else None"
    (while sleep 15; do cp "$dir/status.json" "$OUT/" 2>/dev/null; done) & copier=$!
    # SIGTERM at STUDY_TIMEOUT: the threaded study stops its runs at a step's end with a resumable last.pt; KILL 20 s later
    { time timeout -k 20 ${STUDY_TIMEOUT:-520} python3 -m flowstudy.cli study "$spec" --out "$dir" ; } > "$OUT/flagship.log" 2>&1
    kill $copier; cp "$dir/status.json" "$OUT/" 2>/dev/null
    grep -v "^USDT\|^STAGE\|^[│┃┏┡└├]" "$OUT/flagship.log" | tail -12 | cut -c1-300
    python3 -m flowstudy.cli study "$dir" --status
    python3 benchmarks/profile_evaluation.py --from-study "$dir" > "$OUT/flagship-eval.md" 2>&1; cat "$OUT/flagship-eval.md"
    (cd "$dir" && tar -czf "$OUT/flagship-report.tgz" $(ls -d report.md report.html results.csv results.jsonl figures status.json spec.toml \
      study.json group_training.json 2>/dev/null))
    # the state: everything but checkpoints and samples, except the samples the report's PCA figure reads (one cell per network)
    keep=$(python3 -c "
import json, sys
rows = [json.loads(l) for l in open('$dir/results.jsonl') if l.strip()] if __import__('os').path.exists('$dir/results.jsonl') else []
first = {}
for r in sorted(rows, key=lambda r: r.get('subset') is not None):
    first.setdefault(r['arch'], '$name/cells/' + r['id'] + '/samples.npy')
print(' '.join(first.values()))")
    rm -f /tmp/flagship-state.tar  # tar's --exclude also drops named files: the kept samples are appended
    (cd /tmp/flagship && tar -cf /tmp/flagship-state.tar --exclude='*.pt' --exclude='samples.npy' "$name" && { [ -z "$keep" ] || tar -rf /tmp/flagship-state.tar $keep; } \
      && gzip -c /tmp/flagship-state.tar | split -b 15M - "$OUT/flagship-state.tgz.")
    ls -la "$OUT"
    ;;
  final)
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    [ -n "${FINAL_TESTS:-}" ] && timeout ${TEST_TIMEOUT:-60} python3 -m pytest -q -m gpu tests/train/test_graph.py tests/train/test_stacked.py \
      tests/train/test_precision.py -p no:cacheprovider -o addopts="" 2>&1 | tail -6
    # STUDY_TIMEOUT leaves room for a cold start, the wheel install and the copies within one call (~560 s)
    # the phase's progress is copied to $OUT as it goes, so that a call cut at its limit still brings it back
    (while sleep 15; do cp /tmp/studies/architectures/group_training.json "$OUT/" 2>/dev/null; done) & copier=$!
    GROUP_SIZE=64 STUDY_TIMEOUT=${STUDY_TIMEOUT:-400} bash benchmarks/gpu_session.sh study studies/architectures.toml ${WORKERS:-12} > /tmp/final.log 2>&1
    kill $copier
    grep -v "^-\|tgz\|^total\|^drwx\|\.json" /tmp/final.log | tail -6 | cut -c1-400
    python3 -c "
import json
d = json.load(open('/tmp/studies/architectures/group_training.json'))
print('groups', d['groups'], 'runs', d['runs'], 'seconds', round(d['seconds'], 1), 'complete', d['complete'])
for f in d['failed']:
    print('failed:', len(f['runs']), f['runs'][0], f['error'][:200])
for f in d['finished']:  # the phase's time at the group's end; its training start; its setup (group_setup_seconds)
    try:
        s = json.load(open('/tmp/studies/architectures/runs/' + f['runs'][0] + '/train_summary.json'))
    except OSError:
        s = {}
    setup = {k: round(v, 1) for k, v in s.get('group_setup_seconds', {}).items()}
    print(round(f['seconds'], 1), len(f['runs']), f['runs'][0], 'started', round(f['seconds'] - s.get('train_seconds', 0), 1), s.get('group_step'), setup)
" 2>&1 | tail -40
    cp /tmp/studies/architectures/group_training.json "$OUT/" 2>/dev/null
    ;;
esac
