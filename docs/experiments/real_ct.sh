#!/usr/bin/env bash
# Issue 34's five findings, rerun on TotalSegmentator's reference CTs (real scans, its model's labels),
# then a run that trains on the two NIfTI scans and tests on the DICOM series. From the repository
# root, after ./install test (which fetches the source distribution):
#   docs/experiments/real_ct.sh [WORK_DIR]   (RUN=1 docs/experiments/real_ct.sh adds the 5-minute run)
set -euo pipefail
repo=$(pwd)
export PATH="$repo/.venv/bin:$PATH"
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work"
export BENCH_CACHE_DIR="$work/cache"
python3 - "$repo" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import nibabel as nib
from tests.real_ct import CASES, build_dataset, extract_references, totalseg_classes

refs = extract_references(Path("sdist"))
build_dataset(refs, Path("real"))  # labels in BTCV's 13 values and names
classes = totalseg_classes(refs)
labels = {"background": 0, **{name: value for value, name in classes.items()}}
Path("totalseg.json").write_text(json.dumps({"labels": labels}))
# The same scans under TotalSegmentator's own 117 labels: a large label set as it is published.
own = json.loads(Path("real/dataset.json").read_text())
own["labels"] = labels
Path("real117").mkdir(exist_ok=True)
for entry, (_, label) in zip(own["training"], CASES.values()):
    (Path("real117") / entry["image"]).parent.mkdir(parents=True, exist_ok=True)
    src = Path("real") / entry["image"]
    dst = Path("real117") / entry["image"]
    if not dst.exists():
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    (Path("real117") / entry["label"]).parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.load(str(refs / "tests/reference_files" / label)), str(Path("real117") / entry["label"]))
Path("real117/dataset.json").write_text(json.dumps(own))
Path("preds").mkdir(exist_ok=True)
(Path("preds") / "ts_0002.nii.gz").write_bytes((refs / "tests/reference_files/example_seg_fast.nii.gz").read_bytes())
EOF
echo "== 1. a 117-name label set (TotalSegmentator's own labels)"
bench data check --data-root real117 | tail -2
python3 -c "
import sys; sys.path.insert(0, '$repo')
from bench.data.btcv import locate_dataset
labels = locate_dataset('real117').labels
print(len(set(labels.columns)), 'distinct columns of', len(labels.organs), '; e.g.', ', '.join(f'{o}={c}' for o, c in zip(labels.organs, labels.columns) if o in ('humerus_left', 'hip_left', 'gluteus_maximus_left', 'gluteus_medius_left', 'gluteus_minimus_left', 'kidney_right')))
"
echo "== 2. TotalSegmentator's 'fast' output scored by name against BTCV-named references"
[ -f real-0002.json ] || bench splits make --data-root real --name real-0002 --test 0002 --fractions 100pct --out real-0002.json >/dev/null
rm -rf runs-score
bench score preds --method totalseg-fast --data 100pct --repeat 0 --protocol real-0002.json --data-root real \
  --label-map by-name --prediction-labels totalseg.json --out runs-score | grep -v "^read "
echo "== 3. bench data check without --protocol"
bench data check --data-root real
echo "== 4 and 5. the DICOM series and its LAS label: shown by 3's note; bench predict on the series below (after a run)"
if [ "${RUN:-0}" = 1 ]; then
  [ -f real3.json ] || bench splits make --data-root real --name real3 --test 0003 --fractions 100pct --out real3.json
  time bench run --methods tpmamba,masam,unetr --data 100pct --protocol real3.json --data-root real --out runs
  bench predict runs/100pct/unetr/repeat0 --images real/imagesTr/ts_0003 --out predicted
fi
