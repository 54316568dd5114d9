/* Forced into every C extension file when MSVC compiles it (setup.py passes /FI); other compilers never see it.
 *
 * - No floating-point contraction: the same rounding as gcc/clang's -ffp-contract=off (MSVC before Visual
 *   Studio 2022 contracted under /fp:precise where the target has fused multiply-add, e.g. ARM64).
 * - The GCC/clang builtins the kernels use, which MSVC lacks: __builtin_prefetch (a hint: without it the code
 *   does the same, unhinted) and __builtin_ctzll (count trailing zeros of a nonzero 64-bit word, as
 *   _BitScanForward64 does on x64 and ARM64; 32-bit Windows is not built). __builtin_popcountll is only
 *   used under __GNUC__ / __clang__ (_search.c has a portable fallback).
 */
#pragma once
#if defined(_MSC_VER) && !defined(__clang__)
#pragma fp_contract(off)
#include <intrin.h>
#ifndef __builtin_prefetch
#define __builtin_prefetch(...) ((void)0)
#endif
static __forceinline int alchemy_msvc_ctzll(unsigned long long x) {
    unsigned long index;
    _BitScanForward64(&index, x);
    return (int)index;
}
#define __builtin_ctzll(x) alchemy_msvc_ctzll((unsigned long long)(x))
#endif
