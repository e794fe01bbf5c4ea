#!/usr/bin/env bash
# Runs the benchmark suites, the PyTorch side-by-side scripts and the comparison with the baseline.
#
#   benchmarks/run.sh quick|full [--baseline DIR] [--out DIR] [--threshold 10%] [--noise-floor 1us]
#                                [--mann-whitney [ALPHA]] [--raw] [--no-pytorch] [-- BENCHMARKDOTNET ARGS...]
#   benchmarks/run.sh smoke [-- BENCHMARKDOTNET ARGS...]     (CI: every benchmark once, no timing, no PyTorch)
#   benchmarks/run.sh promote RESULTS_DIR [--class NAME]     (make a run the baseline of its machine class)
#
# quick: tiny preset, CPU only, 2 warm-up + 5 measured iterations of ~200 ms (a few minutes on 2 cores).
# full:  every preset and device, BenchmarkDotNet's default job (much longer).
# Results go to benchmarks/results/<time>-<profile>/ (or --out): BenchmarkDotNet's artifacts under bdn/,
# pytorch.jsonl, and report.md (the comparison and the engine/PyTorch ratios, also printed).
# The baseline defaults to benchmarks/baselines/<machine class>/; the class is $ENGINE_BENCH_CLASS or
# derived from the CPU (e.g. cpu-2core-zen3). When the baseline holds its run's pytorch.jsonl, medians are
# judged after dividing by the machine factor (PyTorch's own slowdown between the runs; --raw: not).
# Exit code 1: a benchmark regressed or failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# cpu-<cores>core-<microarchitecture>: baselines are only comparable on the same kind of machine.
machine_class() {
    if [ -n "${ENGINE_BENCH_CLASS:-}" ]; then echo "$ENGINE_BENCH_CLASS"; return; fi
    local vendor family model arch
    vendor=$(awk -F': ' '/^vendor_id/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
    family=$(awk -F': ' '/^cpu family/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
    model=$(awk -F': ' '/^model\t/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
    case "$vendor:$family" in
        AuthenticAMD:23) arch=$([ "${model:-0}" -ge 48 ] && echo zen2 || echo zen1) ;;
        AuthenticAMD:25) arch=$( { [ "${model:-0}" -ge 16 ] && [ "${model:-0}" -le 31 ]; } || { [ "${model:-0}" -ge 96 ] && [ "${model:-0}" -le 175 ]; } \
                               && echo zen4 || echo zen3) ;;
        AuthenticAMD:26) arch=zen5 ;;
        GenuineIntel:*) arch="intel-f${family}m${model}" ;;
        *) arch="$(uname -m)" ;;
    esac
    echo "cpu-$(nproc)core-$arch"
}

# PyTorch's references run as PyTorch runs for its users: OpenBLAS chooses its own kernels for this CPU.
# The machine's environment may pin OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for other work; they are unset
# for the reference commands alone (never in tests or CI), and the core OpenBLAS chose is recorded.
unpinned_openblas() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }

# The core OpenBLAS selects here (its OPENBLAS_VERBOSE=2 line "Core: NAME"), or why it is unknown.
openblas_core() {
    local python="${PYTHON:-/usr/bin/python3}" core
    core=$(unpinned_openblas OPENBLAS_VERBOSE=2 "$python" -c 'import torch; torch.mm(torch.ones(64, 64), torch.ones(64, 64))' 2>&1 \
        | sed -n 's/^Core: *//p' | head -n 1) || true
    echo "${core:-unknown (no OpenBLAS core line from $python; PyTorch missing or not built on OpenBLAS)}"
}

build() {
    dotnet build benchmarks/Engine.Benchmarks -c Release --nologo -v quiet >&2
}

bench_dll=benchmarks/Engine.Benchmarks/bin/Release/net10.0/Engine.Benchmarks.dll
compare_dll=benchmarks/Engine.BenchCompare/bin/Release/net10.0/Engine.BenchCompare.dll

[ $# -ge 1 ] || usage
profile="$1"
shift

if [ "$profile" = promote ]; then
    [ $# -ge 1 ] || usage
    results="$1"
    shift
    class="$(machine_class)"
    if [ "${1:-}" = --class ] && [ $# -ge 2 ]; then class="$2"; fi
    mapfile -t reports < <(find "$results" -name '*-report-full.json' | sort)
    [ ${#reports[@]} -gt 0 ] || { echo "no *-report-full.json under $results" >&2; exit 2; }
    build
    dotnet "$compare_dll" check "$results"
    dest="benchmarks/baselines/$class"
    mkdir -p "$dest"
    rm -f "$dest"/*-report-full.json
    cp "${reports[@]}" "$dest/"
    rm -f "$dest/pytorch.jsonl"
    if [ -f "$results/pytorch.jsonl" ]; then cp "$results/pytorch.jsonl" "$dest/"; fi
    { echo "promoted from: $results"; [ -f "$results/run.txt" ] && cat "$results/run.txt"; } > "$dest/source.txt"
    echo "baseline $dest now holds ${#reports[@]} reports (commit them with git add $dest)"
    exit 0
fi

baseline="" out="" pytorch=1
compare_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --baseline) baseline="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --threshold|--noise-floor) compare_args+=("$1" "$2"); shift 2 ;;
        --mann-whitney)
            if [ $# -ge 2 ] && [[ "$2" != --* ]]; then compare_args+=("$1" "$2"); shift 2; else compare_args+=("$1"); shift; fi ;;
        --raw) compare_args+=("$1"); shift ;;
        --no-pytorch) pytorch=0; shift ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
bdn_args=("$@")

case "$profile" in
    quick)
        export ENGINE_BENCH_PRESETS="${ENGINE_BENCH_PRESETS:-tiny}" ENGINE_BENCH_DEVICES="${ENGINE_BENCH_DEVICES:-cpu}"
        job=(--launchCount 1 --warmupCount 2 --iterationCount 5 --iterationTime 200) ;;
    full)
        job=() ;;
    smoke)
        # Every benchmark once, on every device this machine has: a broken benchmark fails the run.
        export ENGINE_BENCH_PRESETS="${ENGINE_BENCH_PRESETS:-tiny}"
        job=(--job dry) ;;
    *) usage ;;
esac

class="$(machine_class)"
out="${out:-benchmarks/results/$(date -u +%Y%m%d-%H%M%S)-$profile}"
mkdir -p "$out"
build
{
    echo "profile: $profile"
    echo "machine class: $class"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "presets: ${ENGINE_BENCH_PRESETS:-all}; devices: ${ENGINE_BENCH_DEVICES:-all}"
} > "$out/run.txt"

# The benchmark host exits 1 when a benchmark threw; finish the report first, then fail.
status=0
filter=(--filter '*')
for a in "${bdn_args[@]}"; do [ "$a" = --filter ] && filter=(); done
dotnet "$bench_dll" "${filter[@]}" "${job[@]}" --exporters fulljson --artifacts "$out/bdn" "${bdn_args[@]}" || status=1

if [ "$profile" = smoke ]; then
    dotnet "$compare_dll" check "$out/bdn" || status=1
    exit "$status"
fi

if [ "$pytorch" = 1 ]; then
    quick_flag=()
    [ "$profile" = quick ] && quick_flag=(--quick)
    core="$(openblas_core)"
    echo "openblas core (PyTorch references, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset): $core" | tee -a "$out/run.txt"
    unpinned_openblas dotnet "$bench_dll" pytorch --out "$out/pytorch.jsonl" "${quick_flag[@]}" || status=1
fi

baseline="${baseline:-benchmarks/baselines/$class}"
if ! compgen -G "$baseline/*-report-full.json" >/dev/null && ! [ -f "$baseline" ]; then
    echo "no baseline reports in $baseline (promote one with: benchmarks/run.sh promote $out)"
    baseline=none
fi
if [ -d "$baseline" ] && [ -f "$baseline/pytorch.jsonl" ]; then
    compare_args+=(--baseline-pytorch "$baseline/pytorch.jsonl")
fi
dotnet "$compare_dll" compare "$baseline" "$out/bdn" --pytorch "$out/pytorch.jsonl" --markdown "$out/report.md" "${compare_args[@]}" \
    || status=1
if [ -n "${core:-}" ] && [ -f "$out/report.md" ]; then
    printf '\nPyTorch references: OpenBLAS core %s (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for them).\n' "$core" >> "$out/report.md"
fi
echo "results: $out (report: $out/report.md)"
exit "$status"
