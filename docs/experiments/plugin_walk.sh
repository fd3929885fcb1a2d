#!/usr/bin/env bash
# The walk of docs/add-a-method.md, timed step by step, in an empty folder given as $1 (bench and pip
# of the harness's environment first on PATH). Uninstall afterwards: pip uninstall sam3d-myadapter.
set -euo pipefail
mkdir -p "$1" && cd "$1"
now() { date +%s.%N; }
t0=$(now)
bench new-method myadapter --out myadapter > new.log
t1=$(now)
pip install -q -e myadapter > pip.log 2>&1
t2=$(now)
bench list > list.log 2>&1
t3=$(now)
bench run --methods myadapter,samed --data 12pct > run.log 2>&1
t4=$(now)
python3 -c "print('new-method %.1f s, pip install -e %.1f s, list %.1f s, run+report %.1f s, total %.1f s' % \
  ($t1-$t0, $t2-$t1, $t3-$t2, $t4-$t3, $t4-$t0))"
