#!/usr/bin/env bash
# Records the public API of the library projects in their PublicAPI.Shipped.txt (Microsoft.CodeAnalysis.PublicApiAnalyzers).
#
#   scripts/public-api.sh            regenerate from scratch: every public symbol into PublicAPI.Shipped.txt, Unshipped empty
#                                    (after merging branches that changed the surface; review the diff like code)
#   scripts/public-api.sh --unshipped  only add what is new to PublicAPI.Unshipped.txt (the analyzer's code fix for RS0016),
#                                    keeping Shipped as it is (symbols removed since still fail the build with RS0017:
#                                    delete their lines from Shipped by hand)
#
# It runs the analyzer's own code fix through `dotnet format analyzers --diagnostics RS0016` (about 30 s a project),
# one project after the other, Engine.Core first (Engine's build needs it).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
for project in src/Engine.Core src/Engine; do
  if [[ "$mode" != "--unshipped" ]]; then
    printf '#nullable enable\n' > "$project/PublicAPI.Shipped.txt"
    printf '#nullable enable\n' > "$project/PublicAPI.Unshipped.txt"
  fi
  dotnet format analyzers "$project/$(basename "$project").csproj" --diagnostics RS0016 --severity warn -v q || true
  if [[ "$mode" != "--unshipped" ]]; then
    # Everything recorded is the shipped surface; Unshipped starts empty.
    { printf '#nullable enable\n'; tail -n +2 "$project/PublicAPI.Unshipped.txt" | sort; } > "$project/PublicAPI.Shipped.txt"
    printf '#nullable enable\n' > "$project/PublicAPI.Unshipped.txt"
  fi
  dotnet build "$project/$(basename "$project").csproj" -c Release -v q -nologo | grep -E " error RS00" | sort -u || true
  echo "$project: $(($(wc -l < "$project/PublicAPI.Shipped.txt") - 1)) shipped, $(($(wc -l < "$project/PublicAPI.Unshipped.txt") - 1)) unshipped API lines"
done
