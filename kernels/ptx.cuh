// Inline-PTX wrappers shared by the kernel files (namespace ptx). Every wrapper whose
// instruction reads or writes memory (cp.async and its commit/wait, ldmatrix, the mbarrier and
// TMA operations, the wgmma fences) carries a "memory" clobber, so the compiler neither caches
// shared memory across it nor moves ordinary loads and stores over it; wrappers that only move
// registers (mma.sync, conversions) do not, so they schedule freely.
//
// Families:
//   sm_80+ : cp.async (16 bytes, zero-filling), ldmatrix x4 (plain and transposed),
//            mma.sync m16n8k16 bf16 -> f32, bf16x2 packing.
//   sm_90a : wgmma (fence / commit / wait, shared-memory matrix descriptors, m64n8k16 and
//            m64n16k16 bf16 -> f32 with both operands in shared memory), mbarrier (init,
//            arrive with an expected transaction count, parity wait), the async-proxy fence,
//            and TMA (cp.async.bulk.tensor 2-D tile loads completing on an mbarrier).
// The sm_90a wrappers assemble only for sm_90a: a kernel that calls them must be compiled
// for that target alone (guard its body with DDX_PTX_SM90A, as the compute_80 PTX the build
// also emits cannot hold them).
//
// Not yet adopted everywhere: kernels/conv.cu keeps its own cp.async/ldmatrix copies, which
// have no "memory" clobbers (unifying them changes what the compiler may reorder, so it waits
// for a GPU session that can measure and test it); kernels/norm_cluster.cuh keeps its
// non-zero-filling cp.async. docs/hopper_plan.md lists the differences.
#ifndef DDX_KERNELS_PTX_CUH
#define DDX_KERNELS_PTX_CUH

#include <cuda_runtime.h>

#include <cstdint>

// True in device code compiled for sm_90a (the "a" features: wgmma, setmaxnreg).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define DDX_PTX_SM90A 1
#else
#define DDX_PTX_SM90A 0
#endif

namespace {
namespace ptx {

// ---- sm_80+: cp.async, ldmatrix, mma.sync -------------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared; valid == false writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldsm4_t(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
// c += a . b, m16n8k16, bf16 in, f32 accumulate (registers only).
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Two floats -> bf16x2 (round to nearest even), lo in the low half (the lower column).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// ---- sm_90a: wgmma ------------------------------------------------------------------------
// A shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): start address,
// leading- and stride-dimension byte offsets (all >> 4, 14 bits each) and the swizzle mode in
// bits 62-63 (0: none, 1: 128-byte, 2: 64-byte, 3: 32-byte). Without swizzling the operand is
// made of 8-row x 16-byte core matrices, each 128 contiguous bytes; for a K-major operand the
// leading offset steps between core matrices along K, the stride offset along M (or N).
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t smem_addr, uint32_t lead_bytes, uint32_t stride_bytes,
                                               uint32_t swizzle) {
    uint64_t d = 0;
    d |= (uint64_t)((smem_addr >> 4) & 0x3FFFu);
    d |= (uint64_t)((lead_bytes >> 4) & 0x3FFFu) << 16;
    d |= (uint64_t)((stride_bytes >> 4) & 0x3FFFu) << 32;
    d |= (uint64_t)(swizzle & 3u) << 62;
    return d;
}

#if DDX_PTX_SM90A
// Orders this thread's register and shared-memory writes before the warpgroup's next wgmma.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N committed wgmma groups are pending.
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator reads/writes across an asynchronous wgmma.
__device__ __forceinline__ void wgmma_fence_reg(float &r) { asm volatile("" : "+f"(r)::"memory"); }

// d (+)= A . B over one m64 x N x k16 step, A [64 x 16] and B [16 x N] bf16 in shared memory
// (descriptors), both K-major (no transpose); accumulate = false overwrites d. Per thread of
// the warpgroup, d holds N / 2 floats: warp w, lane l own rows 16w + l/4 (+8) and columns
// 8j + 2(l%4) (+1), in mma.sync's C-fragment order per n8 block j.
__device__ __forceinline__ void wgmma_m64n8k16_bf16(float (&d)[4], uint64_t da, uint64_t db, bool accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "l"(da), "l"(db), "r"((int)accumulate)
        : "memory");
}
__device__ __forceinline__ void wgmma_m64n16k16_bf16(float (&d)[8], uint64_t da, uint64_t db, bool accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, 1, 1, 0, "
        "0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
        : "l"(da), "l"(db), "r"((int)accumulate)
        : "memory");
}

// ---- sm_90a: mbarrier, async-proxy fence, TMA ---------------------------------------------
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
// Makes mbarrier initialisation visible to the async proxy (TMA) and the cluster.
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// One arrival that also announces `bytes` of transactions (a TMA load's size) on the barrier.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Spins until the barrier's phase with the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}
// Generic-proxy shared-memory writes become visible to the async proxy (wgmma, TMA stores).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// TMA: the 2-D box at coordinates (c0 innermost, c1) of the tensor map `tmap` (a
// CUtensorMap, 64-byte aligned, in kernel-parameter, constant or global memory) into shared
// memory at dst; completion is counted on mbarrier `bar` as transaction bytes.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const void *tmap, int c0, int c1, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            dst),
        "l"(tmap), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}
// Plain bulk copy (no tensor map) of `bytes` (a multiple of 16, both ends 16-byte aligned).
__device__ __forceinline__ void bulk_load(uint32_t dst, const void *src, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
}
#endif  // DDX_PTX_SM90A

}  // namespace ptx
}  // namespace

#endif
