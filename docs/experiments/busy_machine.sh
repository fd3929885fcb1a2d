#!/usr/bin/env bash
# One smoke training step beside a busy process (issue 28): the default threads (every core given)
# against the --threads the warning suggests. Run with nothing else on the machine:
#   PATH=.venv/bin:$PATH docs/experiments/busy_machine.sh
set -euo pipefail
step() { bench speed --methods masam --steps 6 --json "$@" | python3 -c \
  "import json,sys; d=json.load(sys.stdin); print(d['hardware']['torch_threads'], 'threads:', d['methods'][0]['train_step_s'], 's/step')"; }
echo "alone, default threads:"; step
python3 -c "while True: pass" & busy=$!
trap 'kill $busy' EXIT
sleep 1  # past its start-up
echo "beside one busy process, default threads:"; step
echo "beside one busy process, --threads 1:"; step --threads 1
