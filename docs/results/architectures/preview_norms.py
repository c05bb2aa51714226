"""Original-space norm ratio per group from the cells' 200-row float16 sample previews."""
import collections, json, sys, glob, numpy as np
from flowstudy.data import load_dataset
study = sys.argv[1]
held = np.linalg.norm(load_dataset("builtin:sonar-gsm8k-1k:val").embeddings, axis=1).mean()
groups = collections.defaultdict(list)
for f in sorted(glob.glob(f"{study}/cells/*/evaluation.json")):
    ev = json.loads(open(f).read())
    x = np.load(f.replace("evaluation.json", "samples-preview.npy")).astype(np.float64)
    groups[ev["group"]].append(np.linalg.norm(x, axis=1).mean() / held)
print("| configuration | seeds | original-space norm ratio (200-row previews) |\n|---|---|---|")
for g, v in groups.items():
    print(f"| {g} | {len(v)} | {np.mean(v):.3f} (" + ", ".join(f"{r:.3f}" for r in v) + ") |")
