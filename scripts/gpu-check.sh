#!/usr/bin/env bash
# The GPU check: one command for a lent GPU machine (H100/H200 with PyTorch 2.x, transformers and NVRTC; no .NET).
#
#   scripts/gpu-check.sh prepare [--bundle DIR]     here (needs .NET): publish the self-contained CLI and put it,
#                                                   this script, the comparison scripts and the PyTorch fixtures in
#                                                   DIR (default artifacts/gpu-check, ~40 MB; git ignores it)
#   DIR/gpu-check.sh device [--device SPEC] [--out DIR] [--quick]
#                                                   on the GPU machine (needs python3 with torch; transformers for the
#                                                   HF models): every check below, then OUT/summary.md (default OUT:
#                                                   gpu-check-results). SPEC defaults to cuda; cpu or opencl run the
#                                                   same steps here (the CPU against itself, PoCL), --quick shrinks
#                                                   the benchmarks so that a dry run takes a few minutes on 2 cores.
#   scripts/gpu-check.sh prepare --ilgpu            also publish the ILGPU comparison (benchmarks/Engine.Benchmarks
#                                                   ilgpu-gemm, ~45 MB) into DIR-ilgpu (artifacts/gpu-check-ilgpu); the
#                                                   device part runs it when that folder lies beside the bundle
#   scripts/gpu-check.sh [--device SPEC] [--out DIR] both, on a machine that has .NET and the GPU.
#
# With the device tool's `run`: carry artifacts/gpu-check (41 MB; the carry limit is 64 MiB, so the ILGPU folder goes
# in a second call) and run `bash artifacts/gpu-check/gpu-check.sh device --out $OUT/gpu-check`.
#
# Device steps (each one's output is kept in OUT; the summary gives each step's verdict and the figures):
#   1. parity       `engine check-backends`: every op, train steps and generation on the device against the CPU
#                   backend (the CLI's copy of the parity suite, like ggml's test-backend-ops), fp32;
#   2. tf32         the same under ENGINE_CUDA_PRECISION=tf32, bounds x300: the TF32 errors measured (CUDA only);
#   3. fixtures     `engine forward-backward` on the PyTorch fixtures on the device, against their float64
#                   references (bound 1e-4; under TF32 reported with bound 1e-2);
#   4. transformers real transformers models (GPT-2, Llama, Qwen2, Qwen3), random weights saved as HF checkpoints,
#                   the engine's forward, loss and gradients against transformers' (float64, on the GPU);
#   5. benchmarks   train step, decode (batch 16 and 1) and GEMM, the engine beside PyTorch on the same device
#                   (fp32; GEMM also TF32 on CUDA);
#   6. ilgpu        (when prepared) the engine's GEMM as an ILGPU kernel beside the engine's CUDA C GEMM.
# Budget on an H100: ~4-6 minutes (each step is bounded by `timeout`; a step that times out is reported, the rest run).
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

prepare() {
    local root bundle rid ilgpu=0
    root="$(cd "$here/.." && pwd)"
    bundle="$root/artifacts/gpu-check"
    while [ $# -gt 0 ]; do
        case "$1" in
            --bundle) bundle="$2"; shift 2 ;;
            --ilgpu) ilgpu=1; shift ;;
            *) usage ;;
        esac
    done
    rid=linux-x64
    rm -rf "$bundle" && mkdir -p "$bundle/pytorch" "$bundle/fixtures" || exit 1
    # Self-contained single file, not trimmed: the engine's option binder and run folder use reflection-based JSON,
    # which a trimmed app does not carry. The CLI references the GPU backends and registers them (Program.cs).
    dotnet publish "$root/src/Engine.Cli" -c Release -r "$rid" --self-contained -p:PublishSingleFile=true \
        -p:EnableCompressionInSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true -o "$bundle/publish" --nologo -v quiet || exit 1
    mv "$bundle/publish/Engine.Cli" "$bundle/engine" && rm -rf "$bundle/publish"
    cp "$root/scripts/gpu-check.sh" "$root/scripts/gpu-check/hf_compare.py" "$root/scripts/gpu-check/summarize.py" "$bundle/"
    cp "$root"/benchmarks/pytorch/bench_*.py "$bundle/pytorch/"
    for fx in gpt2 gpt2_prefixed_sharded llama_gqa qwen2_tied qwen2_untied qwen2_bf16 qwen3_tied; do
        cp -r "$root/tests/Engine.Tests/Fixtures/$fx" "$bundle/fixtures/"
    done
    echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with local changes)'), built $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$bundle/VERSION"
    echo "bundle: $bundle ($(du -sh "$bundle" | cut -f1)); on the GPU machine run: $bundle/gpu-check.sh device"
    if [ "$ilgpu" = 1 ]; then
        rm -rf "$bundle-ilgpu"
        dotnet publish "$root/benchmarks/Engine.Benchmarks" -c Release -r "$rid" --self-contained -p:PublishSingleFile=true \
            -p:EnableCompressionInSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true -o "$bundle-ilgpu" --nologo -v quiet || exit 1
        find "$bundle-ilgpu" -type f ! -name Engine.Benchmarks -delete
        echo "ILGPU comparison: $bundle-ilgpu ($(du -sh "$bundle-ilgpu" | cut -f1))"
    fi
}

# step NAME SECONDS COMMAND...: runs a step with a time limit, its output in OUT/NAME.txt, its verdict in OUT/steps.tsv.
step() {
    local name="$1" limit="$2" start rc
    shift 2
    start=$(date +%s)
    echo "== $name (limit ${limit}s): $*" >&2
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" >> "$out/steps.tsv"
    tail -n 3 "$out/$name.txt" >&2
    return 0
}

device() {
    local dev=cuda quick=0 python="${PYTHON:-python3}" torch_dev engine fixtures pyt
    out="$PWD/gpu-check-results"
    while [ $# -gt 0 ]; do
        case "$1" in
            --device) dev="$2"; shift 2 ;;
            --out) out="$2"; shift 2 ;;
            --quick) quick=1; shift ;;
            *) usage ;;
        esac
    done
    # In a prepared bundle everything lies beside this script; in the repository, in its own places.
    local helpers="$here"
    engine="${ENGINE:-$here/engine}"
    fixtures="${FIXTURES:-$here/fixtures}"
    pyt="$here/pytorch"
    if [ ! -f "$helpers/hf_compare.py" ]; then
        helpers="$here/gpu-check" fixtures="${FIXTURES:-$here/../tests/Engine.Tests/Fixtures}" pyt="$here/../benchmarks/pytorch"
    fi
    [ -x "$engine" ] || { echo "no engine CLI at $engine: run 'scripts/gpu-check.sh prepare' where .NET is, and copy the bundle" >&2; exit 2; }
    mkdir -p "$out" && out="$(cd "$out" && pwd)" && rm -f "$out"/*.txt "$out"/*.jsonl "$out/steps.tsv"
    torch_dev=$("$python" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo none)
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "bundle: $(cat "$here/VERSION" 2>/dev/null || echo 'not a prepared bundle')"
        echo "engine device: $dev; torch device: $torch_dev"
        "$python" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
              torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' 2>&1
        "$python" -c 'import transformers; print("transformers", transformers.__version__)' 2>&1 | tail -n 1
        command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    } > "$out/environment.txt" 2>&1
    cat "$out/environment.txt" >&2

    local cuda=0
    case "$dev" in cuda*|auto) cuda=1 ;; esac
    # Threads for PyTorch on the CPU (a dry run here); on the GPU it does not matter.
    local threads; threads=$(nproc)

    step parity 240 "$engine" check-backends --device "$dev"
    if [ "$cuda" = 1 ]; then
        step parity-tf32 180 env ENGINE_CUDA_PRECISION=tf32 "$engine" check-backends --device "$dev" --bound-scale 300
    fi
    step fixtures 180 "$python" "$helpers/hf_compare.py" --engine "$engine" --device "$dev" --work "$out/work" --fixtures "$fixtures" \
        --label fp32 --jsonl "$out/compare.jsonl"
    if [ "$cuda" = 1 ]; then
        step fixtures-tf32 180 env ENGINE_CUDA_PRECISION=tf32 "$python" "$helpers/hf_compare.py" --engine "$engine" --device "$dev" \
            --work "$out/work" --fixtures "$fixtures" --bound 1e-2 --label tf32 --jsonl "$out/compare.jsonl"
    fi
    if [ "$torch_dev" != none ]; then
        step transformers 240 "$python" "$helpers/hf_compare.py" --engine "$engine" --device "$dev" --work "$out/work" --transformers \
            --torch-device "$torch_dev" --label fp32 --jsonl "$out/compare.jsonl"
    fi

    # Benchmarks: the engine and PyTorch on the same device, same shapes (benchmarks/README.md's presets).
    local presets steps repeats sizes new_tokens
    if [ "$quick" = 1 ]; then
        presets="tiny"; steps=3; repeats=1; sizes="256 512"; new_tokens=16
    else
        presets="tiny small 124m"; steps=10; repeats=3; sizes="1024 2048 4096"; new_tokens=64
    fi
    [ "$torch_dev" = none ] && echo "no torch: the PyTorch side of the benchmarks is skipped" >&2
    : > "$out/bench.jsonl"
    local p shape train_shape
    for p in $presets; do
        case "$p" in
            tiny) shape="--family gpt2 --layers 4 --dim 256 --heads 4 --vocab 512"; train_shape="--seq 128 --batch 8" ;;
            small) shape="--family gpt2 --layers 6 --dim 512 --heads 8 --vocab 8192"; train_shape="--seq 256 --batch 4" ;;
            124m) shape="--family gpt2 --layers 12 --dim 768 --heads 12 --vocab 50257"; train_shape="--seq 64 --batch 4" ;;
        esac
        # shellcheck disable=SC2086
        bench "train $p" 120 "$engine" bench-train $shape $train_shape --steps "$steps" --warmup 2 --device "$dev"
        [ "$torch_dev" != none ] && bench "train $p" 120 "$python" "$pyt/bench_train.py" $shape $train_shape --steps "$steps" \
            --warmup 2 --threads "$threads" --device "$torch_dev"
        local b
        for b in 16 1; do
            bench "decode $p B$b" 120 "$engine" bench-generate $shape --batch "$b" --prompt-len 16 --new-tokens "$new_tokens" \
                --repeats "$repeats" --device "$dev"
            [ "$torch_dev" != none ] && bench "decode $p B$b" 120 "$python" "$pyt/bench_decode.py" $shape --batch "$b" --prompt-len 16 \
                --new-tokens "$new_tokens" --repeat "$repeats" --threads "$threads" --device "$torch_dev"
        done
    done
    # shellcheck disable=SC2086
    bench "gemm fp32" 120 "$engine" bench-gemm --sizes $sizes --min-time 0.3 --device "$dev"
    [ "$torch_dev" != none ] && bench "gemm fp32" 120 "$python" "$pyt/bench_gemm.py" --sizes $sizes --min-time 0.3 --json \
        --threads "$threads" --device "$torch_dev"
    if [ "$cuda" = 1 ]; then
        bench "gemm tf32" 120 env ENGINE_CUDA_PRECISION=tf32 "$engine" bench-gemm --sizes $sizes --min-time 0.3 --device "$dev"
        [ "$torch_dev" = cuda ] && bench "gemm tf32" 120 "$python" "$pyt/bench_gemm.py" --sizes $sizes --min-time 0.3 --json --tf32 --device cuda
    fi

    local ilgpu_bench="${ILGPU_BENCH:-$here/../gpu-check-ilgpu/Engine.Benchmarks}"
    if [ -x "$ilgpu_bench" ]; then
        # shellcheck disable=SC2086
        step ilgpu 240 "$ilgpu_bench" ilgpu-gemm --sizes $sizes --min-time 0.3
    fi

    "$python" "$helpers/summarize.py" "$out" > "$out/summary.md"
    echo "summary: $out/summary.md" >&2
    grep -E '^(\*\*|verdict)' "$out/summary.md" >&2
}

# bench CASE SECONDS COMMAND...: one benchmark process; its JSON lines go to bench.jsonl tagged with the case and the side.
bench() {
    local what="$1" limit="$2" side rc
    shift 2
    case "$*" in *bench_*.py*) side=pytorch ;; *) side=engine ;; esac
    echo "== bench $what ($side)" >&2
    timeout "$limit" "$@" > "$out/bench-current.txt" 2> "$out/bench-current.err"
    rc=$?
    if [ "$rc" != 0 ]; then
        printf '{"case": "%s", "side": "%s", "error": "exit %s: %s"}\n' "$what" "$side" "$rc" \
            "$(tail -n 1 "$out/bench-current.err" | tr -d '"\\' | cut -c1-200)" >> "$out/bench.jsonl"
        return 0
    fi
    grep '^{' "$out/bench-current.txt" | while IFS= read -r line; do
        printf '{"case": "%s", "side": "%s", "result": %s}\n' "$what" "$side" "$line"
    done >> "$out/bench.jsonl"
    return 0
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    device) shift; device "$@" ;;
    -h|--help) usage ;;
    *) prepare && exec "$(cd "$here/.." && pwd)/artifacts/gpu-check/gpu-check.sh" device "$@" ;;
esac
