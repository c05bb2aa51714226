#!/usr/bin/env bash
# One device call: install the carried wheels, then run one part of the GPU work.
#   bash benchmarks/gpu_session.sh check|bench|study SPEC [WORKERS] [PREVIOUS_TAR]
# Outputs go to $OUT (logs, Markdown tables, a tarball of the study directory without checkpoints).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/*.whl .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
python3 -c "import torch, mamba_ssm; print('torch', torch.__version__, torch.cuda.get_device_name(), 'mamba_ssm', mamba_ssm.__version__)"
part=$1
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
    spec=$2; workers=${3:-8}; prev=${4:-}
    name=$(basename "$spec" .toml)
    if [ -n "$prev" ] && [ -f "$prev" ]; then mkdir -p /tmp/studies && tar -xzf "$prev" -C /tmp/studies; fi
    timeout ${STUDY_TIMEOUT:-480} python3 -c "
import sys
from flowstudy.study import run_study
if __name__ == '__main__':
    rows = run_study(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), progress=False)
    print(len(rows), 'cells done')
" "$spec" "/tmp/studies/$name" "$workers" > /tmp/study.log 2>&1  # no pipe: orphaned workers would hold it open past the timeout
    tail -40 /tmp/study.log
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
esac
