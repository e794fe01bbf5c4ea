#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers (SharpFuzz + AFL++). Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
# Needs: apt-get install afl++; dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0
# Findings go to fuzz/findings/TARGET (git-ignored); the summary line per target gives executions, crashes and hangs.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors index config tokenizer tokenizer_config run_config)

# bin/harness is instrumented (it only runs under afl-fuzz); bin/replay is the same build, plain, for
# replaying a corpus or findings: bin/replay/Engine.Fuzz TARGET DIR...
out=bin/harness
dotnet build Engine.Fuzz -c Release -o bin/replay >/dev/null
if [ ! -f "$out/Engine.Fuzz.dll" ] || [ bin/replay/Engine.dll -nt "$out/.instrumented" ]; then
    rm -rf "$out"
    cp -r bin/replay "$out"
fi
# Instrument the assembly holding the parsers (AFL's edge coverage is recorded from its IL).
if [ ! -f "$out/.instrumented" ] || [ "$out/Engine.dll" -nt "$out/.instrumented" ]; then
    "${SHARPFUZZ:-$HOME/.dotnet/tools/sharpfuzz}" "$out/Engine.dll"
    touch "$out/.instrumented"
fi

export AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
for t in "${targets[@]}"; do
    rm -rf "findings/$t"
    mkdir -p "findings/$t"
    # -t: a run over 5 s is a hang; -m none: the .NET runtime reserves far more virtual memory than AFL's default cap.
    afl-fuzz -i "corpus/$t" -o "findings/$t" -t 5000 -m none -V "$seconds" -- "$out/Engine.Fuzz" "$t" >"findings/$t.log" 2>&1 || true
    stats="findings/$t/default/fuzzer_stats"
    if [ -f "$stats" ]; then
        get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
        echo "$t: $(get execs_done) executions in $(get run_time) s, $(get corpus_count) corpus entries, $(get saved_crashes) crashes, $(get saved_hangs) hangs"
    else
        echo "$t: afl-fuzz did not start (see fuzz/findings/$t.log)"
        tail -5 "findings/$t.log"
    fi
done
