/* Forced into every C extension file when MSVC compiles it (setup.py passes /FI); other compilers never see it.
 *
 * - No floating-point contraction: the same rounding as gcc/clang's -ffp-contract=off (MSVC before Visual
 *   Studio 2022 contracted under /fp:precise where the target has fused multiply-add, e.g. ARM64).
 * - __builtin_prefetch is a GCC/clang hint that MSVC lacks: without it the code does the same, unhinted.
 */
#pragma once
#if defined(_MSC_VER) && !defined(__clang__)
#pragma fp_contract(off)
#ifndef __builtin_prefetch
#define __builtin_prefetch(...) ((void)0)
#endif
#endif
