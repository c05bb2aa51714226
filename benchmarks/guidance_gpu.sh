#!/usr/bin/env bash
# The linear method against guided, latent and prior sampling in one call of at most 8 minutes on a
# GPU host (16 cores): the default MLP prior trained on the GPU, then the optimisation cells as
# single-thread CPU workers, one a core (a cell's GP and 4-row decodings gain nothing from the GPU).
#   OUT=/tmp/out bash benchmarks/guidance_gpu.sh [SEEDS] [BUDGET_S]
# SEEDS (default 0,1,2,3,4): seeds of the cosine study; BUDGET_S (default 420): seconds after which
# unfinished cells are stopped. Order: linear and prior on every seed, then the objective families
# (seed 0, every method), then guided and latent seed by seed. Writes under $OUT (8 files):
# train.log, bench.log, cosine.md and families.md (finals of finished cells beside the top-k bounds,
# from benchmarks/guidance_bounds.py), report-cosine.md and report-families.md (the guidance report:
# final table, paired tests, realism; cells stopped by the time limit are left out and listed in
# bench.log),
# scores-cosine.json and scores-families.json (every cell's scores, benchmarks/guidance_scores.py).
# Needs the project's dependencies on that host's python3 (torch, botorch, numpy, scipy, einops,
# safetensors, pyyaml; wheels carried in .gpu/ are installed first, as benchmarks/gpu_session.sh does).
set -uo pipefail
OUT=${OUT:-/tmp/out}
SEEDS=${1:-0,1,2,3,4}
BUDGET_S=${2:-420}
mkdir -p "$OUT" /tmp/site /tmp/specs
wheels=$(ls .gpu/*.whl .whl/*.whl 2>/dev/null)
[ -n "$wheels" ] && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $wheels >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
WORKERS=$(nproc)
START=$SECONDS
left() { echo $((BUDGET_S - (SECONDS - START))); }
# subset SPEC NAME VARIANT...: a copy of SPEC keeping only the named [variants.*] tables
subset() {
  python3 - "$@" <<'PY'
import re, sys
spec, name, keep = sys.argv[1], sys.argv[2], set(sys.argv[3:])
text = open(spec).read()
head, *tables = re.split(r"(?m)^(?=\[variants\.)", text)
kept = [t for t in tables if re.match(r"\[variants\.([^\]]+)\]", t).group(1) in keep]
open(f"/tmp/specs/{name}.toml", "w").write(head + "".join(kept))
PY
}
bench() {  # bench SPEC SEEDS: run cells until done or the time budget is spent
  local t; t=$(left); [ "$t" -le 10 ] && return 0
  timeout --signal=INT "$t" python3 benchmarks/bench_guidance.py "$1" --out runs/bench --workers "$WORKERS" --seeds "$2" >> "$OUT/bench.log" 2>&1
}
python3 -c "import torch, botorch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'botorch', botorch.__version__)" | tee "$OUT/train.log"
[ -f runs/mlp/checkpoints/best.pt ] || python3 -c "import flowstudy as fs; fs.fit(out='runs/mlp', arch='mlp', device='cuda', progress=False)" >> "$OUT/train.log" 2>&1
echo "prior ready at $((SECONDS - START)) s" | tee -a "$OUT/train.log"
subset studies/guidance-linear.toml cheap linear prior
subset studies/guidance-linear.toml dear guided latent
bench /tmp/specs/cheap.toml "$SEEDS"
bench studies/guidance-families.toml 0
for s in ${SEEDS//,/ }; do bench /tmp/specs/dear.toml "$s"; done
echo "cells stopped at $((SECONDS - START)) s" >> "$OUT/bench.log"
mkdir -p runs/bench-families
for d in runs/bench/mlp/*/; do  # families' cells apart from the cosine study's
  for o in "$d"maxcos_* "$d"reward_* "$d"*noise*; do [ -e "$o" ] && mkdir -p "runs/bench-families/$(basename "$d")" && mv "$o" "runs/bench-families/$(basename "$d")/"; done
done
python3 - <<'PY' >> "$OUT/bench.log"  # stopped cells go to runs/unfinished: reports hold finished cells only
import json, shutil
from pathlib import Path
import numpy as np
for cfg in sorted(Path("runs").glob("bench*/**/config.json")):
    npz = cfg.parent / "evaluations.npz"
    n = len(np.load(npz)["y"]) if npz.exists() else 0
    if n < json.loads(cfg.read_text())["budget"]:
        print(f"unfinished ({n} evaluations): {cfg.parent}")
        dest = Path("runs/unfinished") / cfg.parent.relative_to("runs")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(cfg.parent), str(dest))
PY
python3 benchmarks/guidance_bounds.py runs/bench --out "$OUT/cosine.md" > /dev/null 2>> "$OUT/bench.log"
python3 benchmarks/guidance_bounds.py runs/bench-families --out "$OUT/families.md" > /dev/null 2>> "$OUT/bench.log"
for part in cosine families; do  # the report module directly: no command-line packages needed
  dir=runs/bench; [ $part = families ] && dir=runs/bench-families
  python3 -c "from flowstudy.guidance.report import write_report; write_report(['$dir'], '/tmp/report-$part')" >> "$OUT/bench.log" 2>&1 \
    && cp /tmp/report-$part/report.md "$OUT/report-$part.md"
done
python3 benchmarks/guidance_scores.py dump runs/bench "$OUT/scores-cosine.json" >> "$OUT/bench.log" 2>&1
python3 benchmarks/guidance_scores.py dump runs/bench-families "$OUT/scores-families.json" >> "$OUT/bench.log" 2>&1
echo "done at $((SECONDS - START)) s" >> "$OUT/bench.log"
