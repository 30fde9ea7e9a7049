#!/usr/bin/env bash
# Build the C kernels and the thread pool with ThreadSanitizer and run tools/pool_stress.c:
# three threads submitting jobs of 1-4 threads, some after idle pauses, every result compared
# with the single-threaded one. Exits non-zero on a TSan report or a wrong result.
#
#   bash tools/check_threads.sh        # about a minute
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fusedact-tsan}
mkdir -p "$OUT"
gcc -O1 -g -std=gnu11 -fno-math-errno -fno-trapping-math -ffp-contract=off -fopenmp-simd \
    -fsanitize=thread -Icsrc csrc/*.c tools/pool_stress.c -o "$OUT/pool_stress" -lm -lpthread
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" "$OUT/pool_stress"
