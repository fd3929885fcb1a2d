#!/usr/bin/env bash
# Issue 29: a run SIGKILLed mid-training, its latest checkpoint then truncated to 1000 bytes (as a
# failed copy or a full disk leaves it); the rerun's output and bench status.
#   PATH=.venv/bin:$PATH docs/experiments/damaged_checkpoint.sh /tmp/damaged
set -euo pipefail
out=${1:?a scratch folder}
rm -rf "$out"
args=(--methods unetr --data 12pct --repeats 0 --epochs 6 --checkpoint-minutes 0.0001 --out "$out")
run="$out/12pct/unetr/repeat0"
bench run "${args[@]}" > /dev/null 2>&1 & pid=$!
until [ -f "$run/log.jsonl" ] && [ "$(wc -l < "$run/log.jsonl")" -ge 3 ]; do sleep 0.2; done
kill -STOP $pid  # frozen between checkpoints, then killed outright
until [ -f "$run/checkpoint.pt" ] && [ -f "$run/checkpoint.prev.pt" ]; do kill -CONT $pid; sleep 0.05; kill -STOP $pid; done
kill -KILL $pid; wait $pid || true
truncate -s 1000 "$run/checkpoint.pt"
echo "killed pid $pid after $(wc -l < "$run/log.jsonl") epochs; checkpoint.pt truncated to 1000 bytes"
echo "--- bench run (again)"; bench run "${args[@]}" 2>&1 | grep -v "^ *$" | head -12
echo "--- bench status"; bench status "$out" | tail -3
echo "--- epochs logged: $(python3 -c "import json,sys; print([json.loads(l)['epoch'] for l in open(sys.argv[1])])" "$run/log.jsonl")"
