#!/usr/bin/env bash
# Issue 29: the same grid started twice, 2 s apart, on one runs folder, against one process alone.
# Prints each run's logged epochs and the wall times. Run with nothing else on the machine:
#   PATH=.venv/bin:$PATH docs/experiments/two_processes.sh /tmp/two
set -euo pipefail
work=${1:?a scratch folder}
rm -rf "$work" && mkdir -p "$work"
grid=(--methods unetr --data 12pct --repeats 0,1,2 --epochs 3)
epochs() { for r in 0 1 2; do echo "  repeat$r: $(python3 -c "import json,sys; print([json.loads(l)['epoch'] for l in open(sys.argv[1])])" "$1/12pct/unetr/repeat$r/log.jsonl")"; done; }

start=$(date +%s.%N)
bench run "${grid[@]}" --out "$work/one" > "$work/one.log" 2>&1
echo "one process: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"; epochs "$work/one"

start=$(date +%s.%N)
bench run "${grid[@]}" --out "$work/pair" > "$work/first.log" 2>&1 & first=$!
sleep 2
bench run "${grid[@]}" --out "$work/pair" > "$work/second.log" 2>&1 & second=$!
wait $first; wait $second
echo "two processes: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"; epochs "$work/pair"
echo "second process said:"; grep -E "held by|took the run|waiting for|finished by|already written" "$work/second.log" "$work/first.log" | sed 's/^/  /' || true
