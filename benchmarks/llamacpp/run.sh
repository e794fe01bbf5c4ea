#!/usr/bin/env bash
# The engine beside llama.cpp: prefill and decode of GPT-2-shaped models with random weights, on the CPU.
#
#   benchmarks/llamacpp/run.sh LLAMA_CPP_SOURCE_DIR [--build-dir DIR] [--out DIR] [--shapes tiny,small,124m] [--repeats N]
#                              [--threads N] [--llama-timeout SECONDS] [--no-check] [--keep-models]
#
# LLAMA_CPP_SOURCE_DIR is a checkout of https://github.com/ggerganov/llama.cpp (measured at c392e50, Feb 2025);
# nothing of it is copied into this repository. The script
#   1. builds llama.cpp (in --build-dir, default LLAMA_CPP_SOURCE_DIR/build: CMake Release, GGML_NATIVE=ON, CPU only, no CURL; the
#      targets llama-batched-bench and llama-eval-callback; a no-op when already built),
#   2. builds the engine CLI,
#   3. per shape: `engine bench-generate --save` writes the random model (seed 1) as a HF checkpoint and times
#      the engine on it (batch 16, then batch 1); hf_to_gguf.py writes the same weights as an F32 GGUF;
#      llama-batched-bench times llama.cpp on that file (batch 1 and 16, --repeats runs, median; a run that
#      takes more than --llama-timeout seconds, default 120, is stopped and the shape's llama.cpp figures are
#      left out: on a quiet machine the 124m run takes seconds, on a loaded one llama.cpp's spinning threads
#      can take many minutes),
#   4. checks that llama.cpp's logits match the engine's on each model for two prompts (--no-check skips),
#   5. prints one table (also DIR/table.md; raw lines in DIR/engine.jsonl and DIR/llamacpp.jsonl), and deletes
#      the checkpoints and GGUF files (1.2 GB with 124m) unless --keep-models or the check failed.
# Settings on both sides: F32 weights and KV cache, --threads threads (default 2; ENGINE_CPU_THREADS for the
# engine), 16-token prompts (a different one per sequence), 64 new tokens. Prefill tokens/s = batch x 16 /
# prefill time; decode tokens/s = batch x 64 / decode time. Results: DIR (default
# benchmarks/results/llamacpp-<UTC time>/, git-ignored). Take figures on a quiet machine only.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/benchmarks/llamacpp"
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
llama_src="$(cd "$1" && pwd)" || usage
shift
out="" llama_build="$llama_src/build" shapes="tiny,small,124m" repeats=3 threads=2 check=1 llama_timeout=120 keep_models=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --build-dir) llama_build="$2"; shift 2 ;;
        --shapes) shapes="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --llama-timeout) llama_timeout="$2"; shift 2 ;;
        --no-check) check=0; shift ;;
        --keep-models) keep_models=1; shift ;;
        *) usage ;;
    esac
done
[ -f "$llama_src/CMakeLists.txt" ] && [ -d "$llama_src/gguf-py" ] || { echo "$llama_src is not a llama.cpp source tree" >&2; exit 2; }
python="${PYTHON:-/usr/bin/python3}"
prompt_len=16 new_tokens=64 batches=(1 16)
out="${out:-$root/benchmarks/results/llamacpp-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start ))s] $*" >&2; }

shape_flags() {
    case "$1" in
        tiny) echo "--family gpt2 --layers 4 --dim 256 --heads 4 --vocab 512" ;;
        small) echo "--family gpt2 --layers 6 --dim 512 --heads 8 --vocab 8192" ;;
        124m) echo "--family gpt2 --layers 12 --dim 768 --heads 12 --vocab 50257" ;;
        *) echo "unknown shape '$1' (tiny, small, 124m)" >&2; exit 2 ;;
    esac
}

log "building llama.cpp in $llama_build"
cmake -S "$llama_src" -B "$llama_build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF > "$out/llamacpp-build.log" 2>&1
cmake --build "$llama_build" --target llama-batched-bench llama-eval-callback -j "$(nproc)" >> "$out/llamacpp-build.log" 2>&1 \
    || { tail -n 20 "$out/llamacpp-build.log" >&2; exit 1; }
llama_commit="$(git -C "$llama_src" rev-parse --short HEAD 2>/dev/null || echo "${LLAMA_CPP_COMMIT:-unknown (not a git checkout; set LLAMA_CPP_COMMIT)}")"

log "building the engine CLI"
dotnet build "$root/src/Engine.Cli" -c Release --nologo -v quiet > "$out/engine-build.log" 2>&1 || { tail -n 20 "$out/engine-build.log" >&2; exit 1; }
engine() { dotnet "$root/src/Engine.Cli/bin/Release/net10.0/Engine.Cli.dll" "$@"; }

{
    echo "llama.cpp: $llama_commit ($llama_src)"
    echo "engine: $(git -C "$root" rev-parse --short HEAD)"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores; threads $threads"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/run.txt"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    log "warning: load average $load on $(nproc) cores: other jobs share the CPU, so these figures are noisy (llama.cpp's most)"
fi
: > "$out/engine.jsonl"
: > "$out/llamacpp.jsonl"

IFS=',' read -r -a shape_list <<< "$shapes"
for shape in "${shape_list[@]}"; do
    flags=$(shape_flags "$shape")
    model="$out/models/$shape"
    for b in 16 1; do
        log "$shape: engine, batch $b"
        save=()
        if [ "$b" = 16 ]; then save=(--save "$model"); fi
        # shellcheck disable=SC2086
        line=$(ENGINE_CPU_THREADS=$threads engine bench-generate $flags --batch "$b" --prompt-len $prompt_len --new-tokens $new_tokens \
            --repeats "$repeats" --device cpu "${save[@]}")
        echo "{\"shape\": \"$shape\", \"batch\": $b, \"engine\": $line}" >> "$out/engine.jsonl"
    done
    log "$shape: GGUF"
    "$python" "$here/hf_to_gguf.py" "$model" "$out/models/$shape.gguf" --gguf-py "$llama_src/gguf-py"
    for ((i = 0; i < repeats; i++)); do
        log "$shape: llama.cpp, batch 1 and 16, run $((i + 1))/$repeats"
        if ! timeout "$llama_timeout" "$llama_build/bin/llama-batched-bench" -m "$out/models/$shape.gguf" \
            -c $((16 * (prompt_len + new_tokens))) -b 2048 -ub 512 -npp $prompt_len -ntg $new_tokens \
            -npl "$(IFS=,; echo "${batches[*]}")" -t "$threads" -ctk f32 -ctv f32 \
            --output-format jsonl > "$out/llamacpp-$shape-$i.jsonl" 2> "$out/llamacpp-$shape-$i.log"; then
            log "$shape: llama-batched-bench failed or took more than ${llama_timeout}s (see $out/llamacpp-$shape-$i.log): llama.cpp figures for $shape come from the runs before this one, if any"
            break
        fi
        sed -n "s/^{/{\"shape\": \"$shape\", /p" "$out/llamacpp-$shape-$i.jsonl" >> "$out/llamacpp.jsonl"
    done
done

check_failed=0
if [ "$check" = 1 ]; then
    : > "$out/check.txt"
    for shape in "${shape_list[@]}"; do
        log "$shape: llama.cpp's logits against the engine's"
        "$python" "$here/check_logits.py" --model "$out/models/$shape" --gguf "$out/models/$shape.gguf" \
            --eval-callback "$llama_build/bin/llama-eval-callback" --engine "$root/src/Engine.Cli/bin/Release/net10.0/Engine.Cli.dll" \
            --work "$out/check/$shape" | tee -a "$out/check.txt" >&2 || check_failed=1
    done
fi

"$python" "$here/table.py" "$out" > "$out/table.md"
if [ -f "$out/check.txt" ]; then { echo; sed 's/^/- /' "$out/check.txt"; } >> "$out/table.md"; fi
cat "$out/table.md"
[ "$check_failed" = 0 ] || { echo "llama.cpp's logits differ from the engine's (see above; models kept in $out/models)" >&2; exit 1; }
if [ "$keep_models" = 0 ]; then rm -rf "$out/models"; fi
log "done: $out"
