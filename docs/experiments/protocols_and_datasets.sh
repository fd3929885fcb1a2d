#!/usr/bin/env bash
set -uo pipefail
# The figures of the lab notebook's 2026-12-03 entry on protocols and datasets, in a folder given as $1
# (bench of the harness's environment first on PATH).
mkdir -p "${1:-/tmp/fig27}" && cd "${1:-/tmp/fig27}"
bench run --protocol cv5 --methods unetr,nnunet --data 100pct --repeats all --epochs 13 --out runs-cv5 > cv5.log 2>&1
t() { local s=$(date +%s); "$@"; echo "[$(( $(date +%s) - s )) s] $*"; }
t bench run --protocol synapse8 --methods unetr,nnunet --data 100pct --epochs 13 --out runs-synapse > synapse.log 2>&1
t bench data synth --dataset amos --out amos > amos-synth.log 2>&1
t bench splits make --data-root amos --name amos5 --folds 5 --out amos5.json > amos-splits.log 2>&1
t bench run --data-root amos --protocol amos5.json --methods unetr --data 100pct --repeats 0 --epochs 13 --out runs-amos > amos-run.log 2>&1
rm -rf amos-test preds && mkdir amos-test
for cid in $(python3 -c "import json; print(' '.join(json.load(open('amos5.json'))['fractions']['100pct'][0]['test']))"); do cp amos/imagesTr/amos_$cid.nii.gz amos-test/; done
t bench predict runs-cv5/100pct/unetr/repeat0 --images amos-test --out preds > predict.log 2>&1
t bench score preds --method unetr-trained-on-btcv --data 100pct --repeat 0 --data-root amos --protocol amos5.json --label-map by-name --out runs-amos > cross.log 2>&1
t bench report runs-amos > amos-report.log 2>&1
echo ALLDONE
