#!/usr/bin/env bash
# CI's check of the fuzz targets (fuzz/, part of README's test command):
# builds every target on stable Rust without libFuzzer (the fuzz crate's
# `--no-default-features`), in the tests' target dir so nothing the tests
# built is built again, then feeds each target the empty input and its
# committed seeds (fuzz/seeds/<target>/) once. A library change that breaks
# a target's build or one of its checks fails here. Fuzzing itself needs
# cargo-fuzz and nightly (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p certboard-fuzz --no-default-features --bins
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

empty=$(mktemp)
trap 'rm -f "$empty"' EXIT
n=0
for src in fuzz/fuzz_targets/*.rs; do
    t=$(basename "$src" .rs)
    inputs=("$empty")
    [[ -d fuzz/seeds/$t ]] && inputs+=("fuzz/seeds/$t")
    printf 'fuzz-check: %s: ' "$t" >&2
    "$target_dir/debug/$t" "${inputs[@]}"
    n=$((n + 1))
done
echo "fuzz-check: $n targets built and replayed"
