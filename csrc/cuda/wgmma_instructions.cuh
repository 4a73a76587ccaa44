// wgmma.mma_async with the accumulators in registers, d[N / 2] per thread (sm_90a): m64nNk32
// s32 += s8 x s8 with A and B from shared memory (K-major descriptors; W8A8), and m64nNk16 f32 +=
// bf16 x bf16 / f16 x f16 with A from registers and B from shared memory (W8A16: the int8 weights
// are widened in registers; no transpose, scales +1). The instruction names every accumulator
// register, so the operand lists are spelled out once per accumulator count R below and shared
// by every instruction of that N.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

// Per R = N / 2: the register placeholders and the accumulator operands with constraint C ("+r"
// or "+f"), each list extending the shorter one, then the two descriptors' and the scale-d
// predicate's operand numbers.

#define INT8_MOE_WGMMA_REGS_8 \
  "%0, %1, %2, %3, %4, %5, %6, %7"
#define INT8_MOE_WGMMA_ACC_8(C) \
  C(d[0]), C(d[1]), C(d[2]), C(d[3]), C(d[4]), C(d[5]), C(d[6]), C(d[7])
#define INT8_MOE_WGMMA_DESC_8 "%8, %9"
#define INT8_MOE_WGMMA_PRED_8 "%10"
#define INT8_MOE_WGMMA_RS_OPERANDS_8 "{%8, %9, %10, %11}, %12"
#define INT8_MOE_WGMMA_RS_PRED_8 "%13"

#define INT8_MOE_WGMMA_REGS_16 \
  INT8_MOE_WGMMA_REGS_8 ", " \
  "%8, %9, %10, %11, %12, %13, %14, %15"
#define INT8_MOE_WGMMA_ACC_16(C) \
  INT8_MOE_WGMMA_ACC_8(C), \
  C(d[8]), C(d[9]), C(d[10]), C(d[11]), C(d[12]), C(d[13]), C(d[14]), C(d[15])
#define INT8_MOE_WGMMA_DESC_16 "%16, %17"
#define INT8_MOE_WGMMA_PRED_16 "%18"
#define INT8_MOE_WGMMA_RS_OPERANDS_16 "{%16, %17, %18, %19}, %20"
#define INT8_MOE_WGMMA_RS_PRED_16 "%21"

#define INT8_MOE_WGMMA_REGS_24 \
  INT8_MOE_WGMMA_REGS_16 ", " \
  "%16, %17, %18, %19, %20, %21, %22, %23"
#define INT8_MOE_WGMMA_ACC_24(C) \
  INT8_MOE_WGMMA_ACC_16(C), \
  C(d[16]), C(d[17]), C(d[18]), C(d[19]), C(d[20]), C(d[21]), C(d[22]), C(d[23])
#define INT8_MOE_WGMMA_DESC_24 "%24, %25"
#define INT8_MOE_WGMMA_PRED_24 "%26"
#define INT8_MOE_WGMMA_RS_OPERANDS_24 "{%24, %25, %26, %27}, %28"
#define INT8_MOE_WGMMA_RS_PRED_24 "%29"

#define INT8_MOE_WGMMA_REGS_32 \
  INT8_MOE_WGMMA_REGS_24 ", " \
  "%24, %25, %26, %27, %28, %29, %30, %31"
#define INT8_MOE_WGMMA_ACC_32(C) \
  INT8_MOE_WGMMA_ACC_24(C), \
  C(d[24]), C(d[25]), C(d[26]), C(d[27]), C(d[28]), C(d[29]), C(d[30]), C(d[31])
#define INT8_MOE_WGMMA_DESC_32 "%32, %33"
#define INT8_MOE_WGMMA_PRED_32 "%34"
#define INT8_MOE_WGMMA_RS_OPERANDS_32 "{%32, %33, %34, %35}, %36"
#define INT8_MOE_WGMMA_RS_PRED_32 "%37"

#define INT8_MOE_WGMMA_REGS_48 \
  INT8_MOE_WGMMA_REGS_32 ", " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "  \
  "%44, %45, %46, %47"
#define INT8_MOE_WGMMA_ACC_48(C) \
  INT8_MOE_WGMMA_ACC_32(C), \
  C(d[32]), C(d[33]), C(d[34]), C(d[35]), C(d[36]), C(d[37]), C(d[38]), C(d[39]), \
  C(d[40]), C(d[41]), C(d[42]), C(d[43]), C(d[44]), C(d[45]), C(d[46]), C(d[47])
#define INT8_MOE_WGMMA_DESC_48 "%48, %49"
#define INT8_MOE_WGMMA_PRED_48 "%50"
#define INT8_MOE_WGMMA_RS_OPERANDS_48 "{%48, %49, %50, %51}, %52"
#define INT8_MOE_WGMMA_RS_PRED_48 "%53"

#define INT8_MOE_WGMMA_REGS_64 \
  INT8_MOE_WGMMA_REGS_48 ", " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, "  \
  "%60, %61, %62, %63"
#define INT8_MOE_WGMMA_ACC_64(C) \
  INT8_MOE_WGMMA_ACC_48(C), \
  C(d[48]), C(d[49]), C(d[50]), C(d[51]), C(d[52]), C(d[53]), C(d[54]), C(d[55]), \
  C(d[56]), C(d[57]), C(d[58]), C(d[59]), C(d[60]), C(d[61]), C(d[62]), C(d[63])
#define INT8_MOE_WGMMA_DESC_64 "%64, %65"
#define INT8_MOE_WGMMA_PRED_64 "%66"
#define INT8_MOE_WGMMA_RS_OPERANDS_64 "{%64, %65, %66, %67}, %68"
#define INT8_MOE_WGMMA_RS_PRED_64 "%69"

#define INT8_MOE_WGMMA_REGS_96 \
  INT8_MOE_WGMMA_REGS_64 ", " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, "  \
  "%76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, "  \
  "%88, %89, %90, %91, %92, %93, %94, %95"
#define INT8_MOE_WGMMA_ACC_96(C) \
  INT8_MOE_WGMMA_ACC_64(C), \
  C(d[64]), C(d[65]), C(d[66]), C(d[67]), C(d[68]), C(d[69]), C(d[70]), C(d[71]), \
  C(d[72]), C(d[73]), C(d[74]), C(d[75]), C(d[76]), C(d[77]), C(d[78]), C(d[79]), \
  C(d[80]), C(d[81]), C(d[82]), C(d[83]), C(d[84]), C(d[85]), C(d[86]), C(d[87]), \
  C(d[88]), C(d[89]), C(d[90]), C(d[91]), C(d[92]), C(d[93]), C(d[94]), C(d[95])
#define INT8_MOE_WGMMA_DESC_96 "%96, %97"
#define INT8_MOE_WGMMA_PRED_96 "%98"
#define INT8_MOE_WGMMA_RS_OPERANDS_96 "{%96, %97, %98, %99}, %100"
#define INT8_MOE_WGMMA_RS_PRED_96 "%101"

#define INT8_MOE_WGMMA_REGS_128 \
  INT8_MOE_WGMMA_REGS_96 ", " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, "  \
  "%108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, "  \
  "%120, %121, %122, %123, %124, %125, %126, %127"
#define INT8_MOE_WGMMA_ACC_128(C) \
  INT8_MOE_WGMMA_ACC_96(C), \
  C(d[96]), C(d[97]), C(d[98]), C(d[99]), C(d[100]), C(d[101]), C(d[102]), C(d[103]), \
  C(d[104]), C(d[105]), C(d[106]), C(d[107]), C(d[108]), C(d[109]), C(d[110]), C(d[111]), \
  C(d[112]), C(d[113]), C(d[114]), C(d[115]), C(d[116]), C(d[117]), C(d[118]), C(d[119]), \
  C(d[120]), C(d[121]), C(d[122]), C(d[123]), C(d[124]), C(d[125]), C(d[126]), C(d[127])
#define INT8_MOE_WGMMA_DESC_128 "%128, %129"
#define INT8_MOE_WGMMA_PRED_128 "%130"
#define INT8_MOE_WGMMA_RS_OPERANDS_128 "{%128, %129, %130, %131}, %132"
#define INT8_MOE_WGMMA_RS_PRED_128 "%133"

// One wgmma with R accumulators: INSTR the instruction, SUFFIX what follows the predicate.
#define INT8_MOE_WGMMA(INSTR, R, SUFFIX, C)                                               \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " INT8_MOE_WGMMA_PRED_##R ", 0;\n" INSTR \
               " {" INT8_MOE_WGMMA_REGS_##R "}, " INT8_MOE_WGMMA_DESC_##R ", p" SUFFIX   \
               ";\n}\n"                                                                  \
               : INT8_MOE_WGMMA_ACC_##R(C)                                                \
               : "l"(desc_a), "l"(desc_b), "r"(1))

// The same with A's four registers (a[4]) instead of its descriptor; the immediates after the
// predicate: scale-a and scale-b +1, B not transposed. (Both expand only inside the sm_90a
// branches of wgmma_s8 / wgmma_f16_rs below.)
#define INT8_MOE_WGMMA_RS(INSTR, R)                                                           \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " INT8_MOE_WGMMA_RS_PRED_##R ", 0;\n" INSTR \
               " {" INT8_MOE_WGMMA_REGS_##R "}, " INT8_MOE_WGMMA_RS_OPERANDS_##R              \
               ", p, 1, 1, 0;\n}\n"                                                          \
               : INT8_MOE_WGMMA_ACC_##R("+f")                                                 \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1))

namespace int8_moe {

// d[0 .. N / 2) += A x B over N routes (B's first N rows): R >= N / 2 accumulators, the rest
// untouched, so that a tile's last route block can multiply only the routes it holds (N a
// quarter, half or three quarters of the tile's; m64nNk32 s8 takes N in steps of 16 up to 256).
template <int N, int R>
__device__ __forceinline__ void wgmma_s8(int (&d)[R], uint64_t desc_a, uint64_t desc_b) {
  static_assert(N / 2 <= R, "N / 2 accumulators");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define INT8_MOE_WGMMA_S8(NN, RR)                                                        \
  if constexpr (N == NN)                                                                 \
    INT8_MOE_WGMMA("wgmma.mma_async.sync.aligned.m64n" #NN "k32.s32.s8.s8", RR, "", "+r"); \
  else
  INT8_MOE_WGMMA_S8(16, 8)
  INT8_MOE_WGMMA_S8(32, 16)
  INT8_MOE_WGMMA_S8(48, 24)
  INT8_MOE_WGMMA_S8(64, 32)
  INT8_MOE_WGMMA_S8(96, 48)
  INT8_MOE_WGMMA_S8(128, 64)
  INT8_MOE_WGMMA_S8(192, 96)
  INT8_MOE_WGMMA_S8(256, 128)
  static_assert(N == 0, "no m64nNk32 s8 instruction spelled out for this N");
#undef INT8_MOE_WGMMA_S8
#endif
}

// d[0 .. N / 2) += A (registers: mma.m16n8k16's A fragment per warp, warp w of the warpgroup
// rows 16w..) x B over N routes, in T's PTX type (bf16 or f16); R >= N / 2 accumulators, the rest
// untouched (as wgmma_s8).
template <typename T, int N, int R>
__device__ __forceinline__ void wgmma_f16_rs(float (&d)[R], const uint32_t (&a)[4],
                                             uint64_t desc_b) {
  static_assert(N / 2 <= R, "N / 2 accumulators");
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "bf16 or fp16");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr bool BF16 = std::is_same_v<T, __nv_bfloat16>;
#define INT8_MOE_WGMMA_F16_RS(NN, RR)                                                     \
  if constexpr (N == NN && BF16)                                                          \
    INT8_MOE_WGMMA_RS("wgmma.mma_async.sync.aligned.m64n" #NN "k16.f32.bf16.bf16", RR);  \
  else if constexpr (N == NN)                                                             \
    INT8_MOE_WGMMA_RS("wgmma.mma_async.sync.aligned.m64n" #NN "k16.f32.f16.f16", RR);    \
  else
  INT8_MOE_WGMMA_F16_RS(16, 8)
  INT8_MOE_WGMMA_F16_RS(32, 16)
  INT8_MOE_WGMMA_F16_RS(48, 24)
  INT8_MOE_WGMMA_F16_RS(64, 32)
  INT8_MOE_WGMMA_F16_RS(96, 48)
  INT8_MOE_WGMMA_F16_RS(128, 64)
  INT8_MOE_WGMMA_F16_RS(192, 96)
  INT8_MOE_WGMMA_F16_RS(256, 128)
  static_assert(N == 0, "no m64nNk16 instruction spelled out for this N");
#undef INT8_MOE_WGMMA_F16_RS
#endif
}

}  // namespace int8_moe
