#!/bin/sh
# build_kernels.sh -- build and run the kernel tests (and the kernel bench) without the
# project Makefile. Kernels + the allocator/status helpers they need; baseline x86-64 flags
# (the SIMD paths are selected at run time), OpenMP on.
#   tests/build_kernels.sh          build + run build/test_kernels
#   tests/build_kernels.sh bench    also build build/bench_kernels
set -e
cd "$(dirname "$0")/.."
mkdir -p build
CC=${CC:-gcc}
CFLAGS=${CFLAGS:-"-O2 -g -fopenmp -Wall -Wextra -std=gnu11"}
SRC="src/kernels/*.c src/alloc.c src/status.c"
$CC $CFLAGS -Iinclude -Isrc -o build/test_kernels tests/test_kernels.c $SRC -lm
if [ "$1" = "bench" ]; then
    $CC $CFLAGS -Iinclude -Isrc -o build/bench_kernels bench/bench_kernels.c $SRC -lm
    exit 0
fi
./build/test_kernels
