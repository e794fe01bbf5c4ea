#!/usr/bin/env bash
# DAPO's ablation ladder on the demo task: one SFT warm start (the demo's SFT phase), then the six
# RL rungs from that same checkpoint with the demo's RL budget, each in its own run folder:
#   0 naive GRPO, 1 + overlong filtering, 2 + clip-higher, 3 + soft overlong punishment,
#   4 + token-level loss, 5 + dynamic sampling (= DAPO, the demo's RL phase).
# Usage: scripts/ablation-ladder.sh [OUT_DIR] [extra flags for every run, e.g. --device opencl]
# (ENGINE_CLI=path/to/Engine.Cli.dll runs a built copy instead of building src/Engine.Cli.)
# OUT_DIR/sft may already hold an SFT run (the demo's run folder will do): it is reused.
# Prints a table of test accuracy (avg@8 at the rollout temperature, and greedy) per rung.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/ladder}"
shift || true
if [ -n "${ENGINE_CLI:-}" ]; then
    engine() { dotnet "$ENGINE_CLI" "$@"; }
else
    engine() { dotnet run --project src/Engine.Cli -c Release --no-build -- "$@"; }
    dotnet build src/Engine.Cli -c Release -v q -nologo >/dev/null
fi

if [ ! -d "$out/sft/checkpoints" ]; then
    # the demo's settings with the RL phase left out
    engine sft --out "$out/sft" "$@"
fi
sft=$(ls -d "$out"/sft/checkpoints/sft-* | sort | tail -1)/model

# The rl command takes the demo's RL budget and evaluation; the rung decides the techniques.
same=(--set "model.init_from=$sft")
for stage in 0 1 2 3 4 5; do
    if [ ! -f "$out/rung$stage/summary.json" ]; then
        engine rl --algo "ladder-$stage" --out "$out/rung$stage" "${same[@]}" "$@" >"$out/rung$stage.log" 2>&1 || { echo "rung $stage failed: see $out/rung$stage.log" >&2; exit 1; }
    fi
done

printf '%-6s %-40s %10s %10s %10s %10s %8s\n' rung settings avg_before avg_after greedy_bef greedy_aft wall_s
for stage in 0 1 2 3 4 5; do
    /usr/bin/env python3 - "$out/rung$stage/summary.json" "$stage" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
names = ["naive GRPO", "+ overlong filtering", "+ clip-higher", "+ soft overlong punishment", "+ token-level loss", "+ dynamic sampling (DAPO)"]
g = lambda k: s.get(k)
f = lambda v: "-" if v is None else f"{100 * v:.1f}%"
print(f"{sys.argv[2]:<6} {names[int(sys.argv[2])]:<40} {f(g('accuracy_before_rl')):>10} {f(g('accuracy_after_rl')):>10} "
      f"{f(g('greedy_accuracy_before_rl')):>10} {f(g('greedy_accuracy_after_rl')):>10} {g('wall_seconds') or 0:>8.0f}")
PY
done
