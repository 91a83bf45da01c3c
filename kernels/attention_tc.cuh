// Part of kernels/attention.cu, included inside its anonymous namespace after
// kernels/attention_simt.cuh (not a standalone header): the bf16 tensor-core (mma.sync)
// attention kernels and their host side, namespace tc.
// ==== bf16 tensor-core path =================================================================
// mma.sync.m16n8k16 (bf16 in, fp32 accumulate) versions of the three kernels above, taken by
// the bf16 launchers when head_dim % 8 == 0, head_dim <= 256, every pointer is 16-byte aligned
// and the device is sm_80+ with enough opt-in shared memory; anything else runs the fp32 SIMT
// kernels. Tiles are [rows][DP + 8] bf16 in shared memory, DP = head_dim rounded up to the
// bucket 32/64/128/256 (columns past head_dim zero-filled, so they add nothing to a dot product
// and produce output columns that are never stored); the +8 makes the row stride an odd
// multiple of 16 bytes, so the 8 row addresses of an ldmatrix hit 8 distinct bank groups.
// Tiles arrive by cp.async (rows past L and columns past head_dim are zero-filled by the copy
// itself), double-buffered so the next tile loads while this one is multiplied.
//
// Warp-level building blocks (each warp owns 16 rows of the left operand):
//   warp_abt: acc[16 x 8*NT8] += A[16][DP] . B[8*NT8][DP]^T   (A, B row-major in smem)
//   warp_ab:  acc[16 x 8*NN8] += P[16][KP] . B[KP][8*NN8]     (P in registers, B row-major)
// Fragment layouts (PTX ISA, m16n8k16; g = lane / 4, t = lane % 4):
//   A regs a0..a3 = (row g, cols 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)
//   B regs b0, b1 = (k rows 2t..2t+1, col g), (k rows 2t+8..2t+9, col g)
//   C regs c0..c3 = (row g, cols 2t, 2t+1), (row g+8, cols 2t, 2t+1)
// so the C fragments of two adjacent n8 tiles, packed to bf16 pairs, are exactly the A
// fragment of one k16 step: S/P never leave registers between the two products.
namespace tc {

constexpr int PAD = 8;   // bf16 elements of row padding

// The sm_80 wrappers (cp.async, ldmatrix, mma.sync, bf16 packing) are kernels/ptx.cuh's.
using ptx::cp_async16;
using ptx::cp_commit;
using ptx::cp_wait;
using ptx::ldsm4;
using ptx::ldsm4_t;
using ptx::mma16816;
using ptx::pack_bf16;
using ptx::smem_u32;

// dst[r][c] = src[(row0 + r) * C + c] for r < ROWS, c < DP; zero past L and past D. src is the
// (item, row 0, head column 0) origin; D % 8 == 0 and src 16-byte aligned (checked on the host),
// so a 16-byte chunk is wholly inside or wholly outside the head's columns.
template <int ROWS, int DP> __device__ __forceinline__ void load_tile(uint16_t *dst, const uint16_t *src, int64_t C, int row0, int L, int D) {
    constexpr int CH = DP / 8, S = DP + PAD;
    static_assert((ROWS * CH) % NT == 0, "tile must split evenly over the block");
    // Not unrolled: unrolled, the compiler hoists every chunk's 64-bit address out of the tile
    // loop and the DP = 256 kernels (128 fp32 accumulators per lane) spill.
#pragma unroll 1
    for (int it = 0; it < ROWS * CH / NT; it++) {
        const int i = it * NT + (int)threadIdx.x;
        const int r = i / CH, c = (i % CH) * 8;
        const bool ok = row0 + r < L && c < D;
        cp_async16(smem_u32(dst + r * S + c), ok ? src + (int64_t)(row0 + r) * C + c : src, ok);
    }
}

template <int N> __device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// acc[16 x 8*NT8] += A[16][K] . B[8*NT8][K]^T. a_base: the warp's first A row; b_base: B row 0;
// both row-major with stride S bf16.
template <int NT8, int K, int S>
__device__ __forceinline__ void warp_abt(float (&acc)[NT8][4], uint32_t a_base, uint32_t b_base, int lane) {
    static_assert(NT8 % 2 == 0 && K % 16 == 0, "bad warp_abt shape");
    const int mi = lane >> 3, r = lane & 7;
    // A: matrices (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = a0..a3.
    const uint32_t a_addr = a_base + (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
    // B (non-transposed: a B row is an n index): (n 0-7, k 0-7) = b0 of tile n, (n 0-7, k 8-15) = b1,
    // then the same for n 8-15 = tile n+1.
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi >> 1) * 8) * S + (mi & 1) * 8) * 2);
#pragma unroll
    for (int k = 0; k < K; k += 16) {
        uint32_t a[4];
        ldsm4(a, a_addr + k * 2);
#pragma unroll
        for (int n = 0; n < NT8; n += 2) {
            uint32_t b[4];
            ldsm4(b, b_addr + (uint32_t)((n * 8 * S + k) * 2));
            mma16816(acc[n], a, b[0], b[1]);
            mma16816(acc[n + 1], a, b[2], b[3]);
        }
    }
}

// acc[16 x 8*NN8] += P[16][8*KP8] . B[8*KP8][8*NN8], P given as C fragments (fp32), B row-major
// [k][n] with stride S (ldmatrix.trans turns its k-major rows into the col operand).
template <int KP8, int NN8, int S>
__device__ __forceinline__ void warp_ab(float (&acc)[NN8][4], const float (&p)[KP8][4], uint32_t b_base, int lane) {
    static_assert(KP8 % 2 == 0 && NN8 % 2 == 0, "bad warp_ab shape");
    const int mi = lane >> 3, r = lane & 7;
    // (k 0-7, n 0-7) = b0 of tile n, (k 8-15, n 0-7) = b1, then n 8-15 = tile n+1.
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
#pragma unroll
    for (int kk = 0; kk < KP8 / 2; kk++) {
        uint32_t a[4];
        a[0] = pack_bf16(p[2 * kk][0], p[2 * kk][1]);
        a[1] = pack_bf16(p[2 * kk][2], p[2 * kk][3]);
        a[2] = pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        a[3] = pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
        for (int n = 0; n < NN8; n += 2) {
            uint32_t b[4];
            ldsm4_t(b, b_addr + (uint32_t)((kk * 16 * S + n * 8) * 2));
            mma16816(acc[n], a, b[0], b[1]);
            mma16816(acc[n + 1], a, b[2], b[3]);
        }
    }
}

// dst rows row0 + g and row0 + g + 8 (< L), columns < D: (ACC: +=) mul * acc, straight from
// the C fragments (each lane a bf16 pair per n8 tile).
template <int N8>
__device__ __forceinline__ void store_frag_acc(uint16_t *dst, int64_t C, int row0, int L, int D, float mul,
                                               const float (&acc)[N8][4], int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = row0 + g + 8 * h;
        if (row >= L) continue;
        uint16_t *drow = dst + (int64_t)row * C;
#pragma unroll
        for (int n = 0; n < N8; n++) {
            const int c = n * 8 + 2 * t;
            if (c >= D) continue;
            uint32_t *p = reinterpret_cast<uint32_t *>(drow + c);
            const uint32_t old = *p;
            *p = pack_bf16(to_f((uint16_t)(old & 0xffffu)) + mul * acc[n][2 * h],
                           to_f((uint16_t)(old >> 16)) + mul * acc[n][2 * h + 1]);
        }
    }
}

constexpr int BM = 64;   // query rows per block in the forward and dQ kernels: 4 warps x 16
constexpr int BKV = 64;  // key rows per block in the dK/dV kernel: 4 warps x 16
template <int DP> struct TCfg {
    static constexpr int FWD_BN = 64;                    // keys per forward tile
    static constexpr int DQ_BN = DP <= 128 ? 32 : 16;    // keys per dQ tile (16: no spills at 256)
    static constexpr int KV_BQ = 32;                     // query rows per dK/dV tile
    static constexpr int S = DP + PAD;
    static constexpr size_t fwd_smem = (size_t)(BM + 4 * FWD_BN) * S * 2;
    static constexpr size_t dq_smem = (size_t)(2 * BM + 4 * DQ_BN) * S * 2;
    static constexpr size_t kv_smem = (size_t)(2 * BKV + 4 * KV_BQ) * S * 2 + 4 * KV_BQ * sizeof(float);
};

// ---- forward, double-buffered K/V (DDX_ATTN_FWD_V1=1) ---------------------------------------
// One block per (item, head, 64 query rows); warp w owns rows 16w..16w+15 and keeps its O rows
// (16 x DP fp32) and its running max / partial sums in registers. Per key tile: S = Q K^T
// (log2 units), online softmax, O += P V with P straight from registers.
template <int DP, int BN>
__global__ void __launch_bounds__(NT)
tc_fwd_k(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int L, int H, int D,
         float scale_log2, int ntiles) {
    constexpr int S = DP + PAD;
    extern __shared__ uint4 tc_smem[];
    uint16_t *Qs = reinterpret_cast<uint16_t *>(tc_smem);   // [BM][S]
    uint16_t *Ks = Qs + BM * S;                              // [2][BN][S]
    uint16_t *Vs = Ks + 2 * BN * S;                          // [2][BN][S]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BM;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *kb = k + bp.base, *vb = v + bp.base;
    const int nkv = (L + BN - 1) / BN;

    load_tile<BM, DP>(Qs, q + bp.base, C, q0, L, D);
    load_tile<BN, DP>(Ks, kb, C, 0, L, D);
    cp_commit();
    load_tile<BN, DP>(Vs, vb, C, 0, L, D);
    cp_commit();

    float o[DP / 8][4];
    zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};   // rows g, g+8; l: this lane's partial sum
    const uint32_t q_addr = smem_u32(Qs + warp * 16 * S);
    for (int j = 0; j < nkv; j++) {
        const int cur = j & 1;
        // Prefetch tile j+1 into the other buffers (freed by the barrier ending tile j-1); two
        // groups per tile, empty past the end, keep the wait counts uniform.
        if (j + 1 < nkv) load_tile<BN, DP>(Ks + (cur ^ 1) * BN * S, kb, C, (j + 1) * BN, L, D);
        cp_commit();
        if (j + 1 < nkv) load_tile<BN, DP>(Vs + (cur ^ 1) * BN * S, vb, C, (j + 1) * BN, L, D);
        cp_commit();
        cp_wait<3>();   // Q and K_j landed
        __syncthreads();
        float s[BN / 8][4];
        zero(s);
        warp_abt<BN / 8, DP, S>(s, q_addr, smem_u32(Ks + cur * BN * S), lane);
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const bool ok = j * BN + n * 8 + 2 * t + (e & 1) < L;
                s[n][e] = ok ? s[n][e] * scale_log2 : -INFINITY;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
            }
        float alpha[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
            // Key j*BN < L is valid, so mx is finite; the first tile's alpha is exp2(-inf) = 0.
            alpha[h] = exp2f(m[h] - mx[h]);
            m[h] = mx[h];
            l[h] *= alpha[h];
        }
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[n][e] = exp2f(s[n][e] - m[e >> 1]);
                l[e >> 1] += s[n][e];
            }
#pragma unroll
        for (int n = 0; n < DP / 8; n++) {
            o[n][0] *= alpha[0];
            o[n][1] *= alpha[0];
            o[n][2] *= alpha[1];
            o[n][3] *= alpha[1];
        }
        cp_wait<2>();   // V_j landed
        __syncthreads();
        warp_ab<BN / 8, DP / 8, S>(o, s, smem_u32(Vs + cur * BN * S), lane);
        __syncthreads();   // K_j, V_j consumed before tile j+2 overwrites them
    }
    cp_wait<0>();
    float inv[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
        inv[h] = 1.0f / l[h];
        const int row = q0 + warp * 16 + g + 8 * h;
        if (t == 0 && row < L) lse[bp.bh * L + row] = (m[h] + log2f(l[h])) * kLn2;
    }
    // Stage the warp's 16 output rows in its own Q rows (no other warp reads them), then write
    // whole 16-byte chunks.
    uint16_t *Ow = Qs + warp * 16 * S;
#pragma unroll
    for (int n = 0; n < DP / 8; n++) {
        const int c = n * 8 + 2 * t;
        *reinterpret_cast<uint32_t *>(Ow + g * S + c) = pack_bf16(o[n][0] * inv[0], o[n][1] * inv[0]);
        *reinterpret_cast<uint32_t *>(Ow + (g + 8) * S + c) = pack_bf16(o[n][2] * inv[1], o[n][3] * inv[1]);
    }
    __syncwarp();
    uint16_t *ob = out + bp.base;
    constexpr int CH = DP / 8;
#pragma unroll
    for (int i = lane; i < 16 * CH; i += 32) {
        const int r = i / CH, c = (i % CH) * 8, row = q0 + warp * 16 + r;
        if (row < L && c < D) *reinterpret_cast<uint4 *>(ob + (int64_t)row * C + c) = *reinterpret_cast<const uint4 *>(Ow + r * S + c);
    }
}

// ---- forward, single K and V buffer (the default) -------------------------------------------
// The kernel above keeps K and V double-buffered: 169 KB of shared memory at DP = 256, so
// one 4-warp block per SM and one warp per scheduler, with nothing to hide the mma, ldmatrix
// and exp latencies. This one (the default; DDX_ATTN_FWD_V1=1 selects the other) keeps ONE K and ONE V
// buffer and overlaps each load with the other product instead:
//   wait K_j | load V_j | S = Q K_j^T, softmax | wait V_j | load K_{j+1} | O += P V_j
// (101 KB at DP = 256: two blocks per SM, two warps per scheduler, and each block's barriers
// and prologue hidden by the other's work). Each warp owns MT m16 row tiles (16 * MT query
// rows): at MT = 2 every K/V fragment from ldmatrix feeds twice the mma, which halves the
// shared-memory traffic per flop where the registers allow it (DP <= 128; DDX_ATTN_FWD_MT=1
// selects MT = 1 there, smaller blocks with more of them per SM, for comparison).
template <int DP> constexpr int fwd2_mt_default() { return DP >= 256 ? 1 : 2; }
template <int DP, int MT_> struct Fwd2Cfg {
    static_assert(MT_ == 1 || (MT_ == 2 && DP <= 128), "MT = 2 needs DP <= 128 (registers)");
    static constexpr int MT = MT_;                     // m16 row tiles per warp
    static constexpr int BN = 64;                      // keys per tile
    static constexpr int BMR = 4 * 16 * MT;            // query rows per block
    // Blocks per SM the registers must allow (ptxas caps the registers at 65536 / (128 MINB)
    // to match; no spills at these): DP * MT / 8 fp32 accumulators plus MT * 32 scores per lane.
    static constexpr int MINB = DP * MT >= 256 ? 2 : (DP == 64 && MT == 2) ? 3 : 4;
    static constexpr int S = DP + PAD;
    static constexpr size_t smem = (size_t)(BMR + 2 * BN) * S * 2;
};

// 2^x; 2^-inf = +0. Same accuracy as exp2f (ex2.approx: 2 ulp), without its denormal fix-up.
__device__ __forceinline__ float fast_exp2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
}

// acc[MT][16 x 8*NT8] += A[16*MT][K] . B[8*NT8][K]^T: warp_abt with MT row tiles sharing each
// B fragment. a_base: the warp's first A row.
template <int MT, int NT8, int K, int S>
__device__ __forceinline__ void warp_abt_m(float (&acc)[MT][NT8][4], uint32_t a_base, uint32_t b_base, int lane) {
    static_assert(NT8 % 2 == 0 && K % 16 == 0, "bad warp_abt_m shape");
    const int mi = lane >> 3, r = lane & 7;
    const uint32_t a_addr = a_base + (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi >> 1) * 8) * S + (mi & 1) * 8) * 2);
#pragma unroll
    for (int k = 0; k < K; k += 16) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) ldsm4(a[mt], a_addr + (uint32_t)((mt * 16 * S + k) * 2));
#pragma unroll
        for (int n = 0; n < NT8; n += 2) {
            uint32_t b[4];
            ldsm4(b, b_addr + (uint32_t)((n * 8 * S + k) * 2));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma16816(acc[mt][n], a[mt], b[0], b[1]);
                mma16816(acc[mt][n + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

// acc[MT][16 x 8*NN8] += P[16*MT][16*KP16] . B[16*KP16][8*NN8], P already packed as A fragments
// (pa[mt][kk] = the k16 step kk), B row-major [k][n] with stride S.
template <int MT, int KP16, int NN8, int S>
__device__ __forceinline__ void warp_ab_m(float (&acc)[MT][NN8][4], const uint32_t (&pa)[MT][KP16][4], uint32_t b_base,
                                          int lane) {
    static_assert(NN8 % 2 == 0, "bad warp_ab_m shape");
    const int mi = lane >> 3, r = lane & 7;
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
#pragma unroll
    for (int kk = 0; kk < KP16; kk++) {
#pragma unroll
        for (int n = 0; n < NN8; n += 2) {
            uint32_t b[4];
            ldsm4_t(b, b_addr + (uint32_t)((kk * 16 * S + n * 8) * 2));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma16816(acc[mt][n], pa[mt][kk], b[0], b[1]);
                mma16816(acc[mt][n + 1], pa[mt][kk], b[2], b[3]);
            }
        }
    }
}

// One block per (item, head, BMR query rows); warp w owns rows w*16*MT .. +16*MT-1 and keeps
// their O (fp32), running max (log2 units) and this lane's partial row sums in registers.
// Same arithmetic as the double-buffered kernel: scores scaled into log2 units in fp32, P rounded to bf16 for P V only,
// l summed from the fp32 P, lse = (m + log2 l) ln 2.
template <int DP, int MT_>
__global__ void __launch_bounds__(NT, Fwd2Cfg<DP, MT_>::MINB)
tc_fwd2_k(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int L, int H, int D,
          float scale_log2, int ntiles) {
    using F = Fwd2Cfg<DP, MT_>;
    constexpr int S = F::S, MT = F::MT, BN = F::BN, BMR = F::BMR;
    extern __shared__ uint4 tc_smem[];
    uint16_t *Qs = reinterpret_cast<uint16_t *>(tc_smem);   // [BMR][S]
    uint16_t *Ks = Qs + BMR * S;                             // [BN][S]
    uint16_t *Vs = Ks + BN * S;                              // [BN][S]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BMR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *kb = k + bp.base, *vb = v + bp.base;
    const int nkv = (L + BN - 1) / BN;

    load_tile<BMR, DP>(Qs, q + bp.base, C, q0, L, D);
    load_tile<BN, DP>(Ks, kb, C, 0, L, D);
    cp_commit();

    float o[MT][DP / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) zero(o[mt]);
    // [mt][h]: rows warp*16*MT + 16*mt + g + 8*h.
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
    const uint32_t q_addr = smem_u32(Qs + warp * 16 * MT * S);
    const uint32_t k_addr = smem_u32(Ks), v_addr = smem_u32(Vs);
    for (int j = 0; j < nkv; j++) {
        const int k0 = j * BN;
        cp_wait<0>();      // K_j (and, at j = 0, Q) landed
        __syncthreads();   // ... for every thread's copies; and every warp is done with V_{j-1}
        load_tile<BN, DP>(Vs, vb, C, k0, L, D);
        cp_commit();

        float s[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) zero(s[mt]);
        warp_abt_m<MT, BN / 8, DP, S>(s, q_addr, k_addr, lane);

        const bool edge = k0 + BN > L;   // only the last tile holds keys past L
        uint32_t pa[MT][BN / 16][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            float mx[2] = {m[mt][0], m[mt][1]};
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float x = s[mt][n][e] * scale_log2;
                    if (edge && k0 + n * 8 + 2 * t + (e & 1) >= L) x = -INFINITY;
                    s[mt][n][e] = x;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
            float alpha[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
                // Key k0 < L is valid, so mx is finite; the first tile's alpha is 2^-inf = 0.
                alpha[h] = fast_exp2(m[mt][h] - mx[h]);
                m[mt][h] = mx[h];
                l[mt][h] *= alpha[h];
            }
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = fast_exp2(s[mt][n][e] - mx[e >> 1]);
                    s[mt][n][e] = p;
                    l[mt][e >> 1] += p;
                }
            // C fragments of n8 tiles 2kk, 2kk+1 = the A fragment of k16 step kk.
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                pa[mt][kk][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][kk][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][kk][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][kk][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int n = 0; n < DP / 8; n++) {
                o[mt][n][0] *= alpha[0];
                o[mt][n][1] *= alpha[0];
                o[mt][n][2] *= alpha[1];
                o[mt][n][3] *= alpha[1];
            }
        }
        cp_wait<0>();      // V_j landed
        __syncthreads();   // ... for every thread's copies; and every warp is done with K_j
        if (j + 1 < nkv) {
            load_tile<BN, DP>(Ks, kb, C, k0 + BN, L, D);
            cp_commit();
        }
        warp_ab_m<MT, BN / 16, DP / 8, S>(o, pa, v_addr, lane);
    }
    // No copies are in flight here: the last tile issued none after its V wait.

    // Stage the warp's output rows in its own Q rows (only this warp ever read them), then write
    // whole 16-byte chunks.
    uint16_t *Ow = Qs + warp * 16 * MT * S;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float inv[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float lt = l[mt][h];
            lt += __shfl_xor_sync(0xffffffffu, lt, 1);
            lt += __shfl_xor_sync(0xffffffffu, lt, 2);
            inv[h] = 1.0f / lt;
            const int row = q0 + warp * 16 * MT + mt * 16 + g + 8 * h;
            if (t == 0 && row < L) lse[bp.bh * L + row] = (m[mt][h] + log2f(lt)) * kLn2;
        }
        uint16_t *Om = Ow + mt * 16 * S;
#pragma unroll
        for (int n = 0; n < DP / 8; n++) {
            const int c = n * 8 + 2 * t;
            *reinterpret_cast<uint32_t *>(Om + g * S + c) = pack_bf16(o[mt][n][0] * inv[0], o[mt][n][1] * inv[0]);
            *reinterpret_cast<uint32_t *>(Om + (g + 8) * S + c) = pack_bf16(o[mt][n][2] * inv[1], o[mt][n][3] * inv[1]);
        }
    }
    __syncwarp();
    uint16_t *ob = out + bp.base;
    constexpr int CH = DP / 8;
#pragma unroll 4
    for (int i = lane; i < 16 * MT * CH; i += 32) {
        const int r = i / CH, c = (i % CH) * 8, row = q0 + warp * 16 * MT + r;
        if (row < L && c < D) *reinterpret_cast<uint4 *>(ob + (int64_t)row * C + c) = *reinterpret_cast<const uint4 *>(Ow + r * S + c);
    }
}

// ---- backward: dQ ---------------------------------------------------------------------------
// One block per (item, head, 64 query rows), looping over key tiles of BN:
// P = exp2(scale_log2 S - lse_log2), dP = dO V^T, dS = P (dP - delta), dQ += dS K.
template <int DP, int BN>
__global__ void __launch_bounds__(NT)
tc_dq_k(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout, const float *lse, const float *delta,
        uint16_t *gq, int L, int H, int D, float scale, float scale_log2, int ntiles) {
    constexpr int S = DP + PAD;
    extern __shared__ uint4 tc_smem[];
    uint16_t *Qs = reinterpret_cast<uint16_t *>(tc_smem);   // [BM][S]
    uint16_t *dOs = Qs + BM * S;                             // [BM][S]
    uint16_t *Ks = dOs + BM * S;                             // [2][BN][S]
    uint16_t *Vs = Ks + 2 * BN * S;                          // [2][BN][S]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BM;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *kb = k + bp.base, *vb = v + bp.base;
    const int nkv = (L + BN - 1) / BN;

    load_tile<BM, DP>(Qs, q + bp.base, C, q0, L, D);
    load_tile<BM, DP>(dOs, dout + bp.base, C, q0, L, D);
    load_tile<BN, DP>(Ks, kb, C, 0, L, D);
    cp_commit();
    load_tile<BN, DP>(Vs, vb, C, 0, L, D);
    cp_commit();

    float lse2[2], del[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = q0 + warp * 16 + g + 8 * h;
        lse2[h] = row < L ? lse[bp.bh * L + row] * kLog2e : 0.0f;
        del[h] = row < L ? delta[bp.bh * L + row] : 0.0f;
    }
    float dq[DP / 8][4];
    zero(dq);
    const uint32_t q_addr = smem_u32(Qs + warp * 16 * S), do_addr = smem_u32(dOs + warp * 16 * S);
    for (int j = 0; j < nkv; j++) {
        const int cur = j & 1;
        if (j + 1 < nkv) load_tile<BN, DP>(Ks + (cur ^ 1) * BN * S, kb, C, (j + 1) * BN, L, D);
        cp_commit();
        if (j + 1 < nkv) load_tile<BN, DP>(Vs + (cur ^ 1) * BN * S, vb, C, (j + 1) * BN, L, D);
        cp_commit();
        cp_wait<3>();   // Q, dO and K_j landed
        __syncthreads();
        float p[BN / 8][4];
        zero(p);
        warp_abt<BN / 8, DP, S>(p, q_addr, smem_u32(Ks + cur * BN * S), lane);
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const bool ok = j * BN + n * 8 + 2 * t + (e & 1) < L;
                p[n][e] = ok ? exp2f(p[n][e] * scale_log2 - lse2[e >> 1]) : 0.0f;
            }
        cp_wait<2>();   // V_j landed
        __syncthreads();
        float dp[BN / 8][4];
        zero(dp);
        warp_abt<BN / 8, DP, S>(dp, do_addr, smem_u32(Vs + cur * BN * S), lane);
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) dp[n][e] = p[n][e] * (dp[n][e] - del[e >> 1]);
        warp_ab<BN / 8, DP / 8, S>(dq, dp, smem_u32(Ks + cur * BN * S), lane);
        __syncthreads();   // K_j, V_j consumed before tile j+2 overwrites them
    }
    cp_wait<0>();
    store_frag_acc<DP / 8>(gq + bp.base, C, q0 + warp * 16, L, D, scale, dq, lane);
}

// ---- backward: dK and/or dV -----------------------------------------------------------------
// One block per (item, head, 64 keys), looping over query tiles of BQ; warp w owns keys
// 16w..16w+15. Transposed products (keys as rows): S^T = K Q^T, P^T = exp2(S^T - lse_log2[col]);
//   MODE & KV_DV: dV += P^T dO
//   MODE & KV_DK: dP^T = V dO^T, dS^T = P^T (dP^T - delta[col]), dK += dS^T Q   (times scale)
// At DP = 256 one 16 x DP fp32 accumulator per warp is all the registers allow, so dK and dV
// are separate launches there (the dV pass recomputes S^T); at DP <= 128 one launch does both.
constexpr int KV_DV = 1, KV_DK = 2;
template <int DP, int BQ, int MODE>
__global__ void __launch_bounds__(NT)
tc_dkv_k(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout, const float *lse,
         const float *delta, uint16_t *gk, uint16_t *gv, int L, int H, int D, float scale, float scale_log2, int ntiles) {
    constexpr bool DK = (MODE & KV_DK) != 0, DV = (MODE & KV_DV) != 0;
    constexpr int S = DP + PAD;
    extern __shared__ uint4 tc_smem[];
    uint16_t *Ks = reinterpret_cast<uint16_t *>(tc_smem);   // [BKV][S]
    uint16_t *Vs = Ks + BKV * S;                             // [BKV][S] (dK only)
    uint16_t *Qs = Vs + BKV * S;                             // [2][BQ][S]
    uint16_t *dOs = Qs + 2 * BQ * S;                         // [2][BQ][S]
    float *lse_s = reinterpret_cast<float *>(dOs + 2 * BQ * S);   // [2][BQ] log2 units
    float *del_s = lse_s + 2 * BQ;                                // [2][BQ]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int k0 = bp.tile * BKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3;
    const uint16_t *qb = q + bp.base, *db = dout + bp.base;
    const float *lse_bh = lse + bp.bh * L, *del_bh = delta + bp.bh * L;
    const int nq = (L + BQ - 1) / BQ;

    load_tile<BKV, DP>(Ks, k + bp.base, C, k0, L, D);
    if (DK) load_tile<BKV, DP>(Vs, v + bp.base, C, k0, L, D);
    load_tile<BQ, DP>(Qs, qb, C, 0, L, D);
    load_tile<BQ, DP>(dOs, db, C, 0, L, D);
    cp_commit();
    for (int i = threadIdx.x; i < BQ; i += NT) {
        lse_s[i] = i < L ? lse_bh[i] * kLog2e : 0.0f;
        del_s[i] = i < L ? del_bh[i] : 0.0f;
    }

    float dk_acc[DP / 8][4], dv_acc[DP / 8][4];   // the unused one is dead code
    zero(dk_acc);
    zero(dv_acc);
    const uint32_t k_addr = smem_u32(Ks + warp * 16 * S), v_addr = smem_u32(Vs + warp * 16 * S);
    for (int j = 0; j < nq; j++) {
        const int cur = j & 1, nxt = cur ^ 1;
        const int qn = (j + 1) * BQ;
        if (j + 1 < nq) {
            load_tile<BQ, DP>(Qs + nxt * BQ * S, qb, C, qn, L, D);
            load_tile<BQ, DP>(dOs + nxt * BQ * S, db, C, qn, L, D);
            for (int i = threadIdx.x; i < BQ; i += NT) {
                lse_s[nxt * BQ + i] = qn + i < L ? lse_bh[qn + i] * kLog2e : 0.0f;
                del_s[nxt * BQ + i] = qn + i < L ? del_bh[qn + i] : 0.0f;
            }
        }
        cp_commit();
        cp_wait<1>();   // tile j (and K, V) landed
        __syncthreads();
        const float *ls = lse_s + cur * BQ, *ds = del_s + cur * BQ;
        float p[BQ / 8][4];
        zero(p);
        warp_abt<BQ / 8, DP, S>(p, k_addr, smem_u32(Qs + cur * BQ * S), lane);
#pragma unroll
        for (int n = 0; n < BQ / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = n * 8 + 2 * t + (e & 1);
                // Query rows past L must add nothing.
                p[n][e] = j * BQ + col < L ? exp2f(p[n][e] * scale_log2 - ls[col]) : 0.0f;
            }
        if (DV) warp_ab<BQ / 8, DP / 8, S>(dv_acc, p, smem_u32(dOs + cur * BQ * S), lane);
        if (DK) {
            float dp[BQ / 8][4];
            zero(dp);
            warp_abt<BQ / 8, DP, S>(dp, v_addr, smem_u32(dOs + cur * BQ * S), lane);
#pragma unroll
            for (int n = 0; n < BQ / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) dp[n][e] = p[n][e] * (dp[n][e] - ds[n * 8 + 2 * t + (e & 1)]);
            warp_ab<BQ / 8, DP / 8, S>(dk_acc, dp, smem_u32(Qs + cur * BQ * S), lane);
        }
        __syncthreads();   // tile j consumed before tile j+2 overwrites its buffers
    }
    cp_wait<0>();
    // dK then dV by the same lanes at the same positions: exact when dk and dv are one buffer.
    if (DK) store_frag_acc<DP / 8>(gk + bp.base, C, k0 + warp * 16, L, D, scale, dk_acc, lane);
    if (DV) store_frag_acc<DP / 8>(gv + bp.base, C, k0 + warp * 16, L, D, 1.0f, dv_acc, lane);
}

// ---- backward, one kernel per role with P and dS in shared memory (the default) -------------
// What limits the two kernels above (DDX_ATTN_BWD_V1=1): at DP = 256 a warp's 16 x DP fp32 accumulator is 128
// registers, so dK and dV are two launches (S^T = K Q^T computed three times over the dK, dV
// and dQ launches: 16 L^2 d flops per head for the 10 the math needs), and the dK/dV block's
// 136 KB of shared memory with its 4 warps leaves one warp per scheduler to hide every
// ldmatrix -> mma and exp latency. These (the default) split each
// warp's OUTPUT columns instead: a block is 4 row groups x CG column groups of warps. Per
// streamed tile every warp computes the scores of its 16 rows against BC / CG of the tile's
// columns (all of the head dim), writes P and dS (bf16, exactly the values the kernels above feed their mma)
// to shared memory, and after one barrier multiplies its 16 rows of them by its DP / CG output
// columns of the tile. Each score is computed once per launch, dK and dV come from one launch
// at every DP (14 L^2 d flops per head with the dQ launch), and a block holds 4 x CG warps (16
// at DP = 256, two 8-warp blocks per SM at DP = 128). One kernel, two roles:
//   KV (one block per 64 keys, streaming queries): F1 = K, F2 = V, X1 = Q, X2 = dO,
//       S^T = K Q^T, P^T = exp2(scale_log2 S^T - lse2[col]), dP^T = V dO^T,
//       dS^T = P^T (dP^T - delta[col]), dK += scale dS^T Q, dV += P^T dO
//   dQ (one block per 64 queries, streaming keys): F1 = Q, F2 = dO, X1 = K, X2 = V,
//       P = exp2(scale_log2 Q K^T - lse2[row]), dS = P (dO V^T - delta[row]), dQ += scale dS K
// Same rounding and summation order as the kernels above (P and dS to bf16 before their products, fp32
// everywhere else; bit-identical in a host emulation), except exp2 = ex2.approx as in the single-buffer
// forward (2 ulp); every grad element is still owned by one lane that sums it in a fixed order.
template <int DP> struct Bwd2Cfg {
    static constexpr int CG = DP >= 256 ? 4 : 2;      // column groups
    static constexpr int NTH = 128 * CG;              // threads per block
    static constexpr int BR = 64;                     // fixed rows per block: 4 row groups x 16
    static constexpr int BC = DP >= 256 ? 64 : 32;    // streamed rows per tile
    static constexpr int QW = BC / CG;                // score columns per warp
    static constexpr int CW = DP / CG;                // output columns per warp
    // Registers: 2 x CW / 2 accumulators (KV) + 16 score regs per lane; ptxas caps them at
    // 65536 / (NTH * MINB): 128 at DP >= 128, 85 below (no spills at these; 64 spills at 32).
    static constexpr int MINB = DP >= 256 ? 1 : DP == 128 ? 2 : 3;
    static constexpr int S = DP + PAD, SP = BC + PAD;   // SP * 2 bytes: an odd multiple of 16
    static constexpr size_t tiles = (size_t)(2 * BR + 4 * BC) * S * 2;   // F1, F2, 2 x X1, 2 x X2
    static constexpr size_t smem_kv = tiles + (size_t)2 * BR * SP * 2 + 4 * BC * sizeof(float);
    static constexpr size_t smem_dq = tiles + (size_t)BR * SP * 2;
    static_assert(QW == 16 && CW % 16 == 0 && BC % 16 == 0, "bad Bwd2Cfg");
};

// dst[r][c] = src[(row0 + r) * C + c] for r < ROWS, c < DP (zero past L and past D), by NTH
// threads. Same rules as load_tile.
template <int ROWS, int DP, int NTH>
__device__ __forceinline__ void load_rows(uint16_t *dst, const uint16_t *src, int64_t C, int row0, int L, int D) {
    constexpr int CH = DP / 8, S = DP + PAD;
#pragma unroll 1
    for (int i = (int)threadIdx.x; i < ROWS * CH; i += NTH) {
        const int r = i / CH, c = (i % CH) * 8;
        const bool ok = row0 + r < L && c < D;
        cp_async16(smem_u32(dst + r * S + c), ok ? src + (int64_t)(row0 + r) * C + c : src, ok);
    }
}

// acc[16 x 8*NN8] += A[16][16*K16] . B[16*K16][8*NN8], both from shared memory, row-major with
// strides SA and SB (A: the warp's 16 rows; B: k-major, turned by ldmatrix.trans).
template <int K16, int NN8, int SA, int SB>
__device__ __forceinline__ void warp_ab_s(float (&acc)[NN8][4], uint32_t a_base, uint32_t b_base, int lane) {
    static_assert(NN8 % 2 == 0, "bad warp_ab_s shape");
    const int mi = lane >> 3, r = lane & 7;
    const uint32_t a_addr = a_base + (uint32_t)(((r + (mi & 1) * 8) * SA + (mi >> 1) * 8) * 2);
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi & 1) * 8) * SB + (mi >> 1) * 8) * 2);
#pragma unroll
    for (int kk = 0; kk < K16; kk++) {
        uint32_t a[4];
        ldsm4(a, a_addr + (uint32_t)(kk * 16 * 2));
#pragma unroll
        for (int n = 0; n < NN8; n += 2) {
            uint32_t b[4];
            ldsm4_t(b, b_addr + (uint32_t)((kk * 16 * SB + n * 8) * 2));
            mma16816(acc[n], a, b[0], b[1]);
            mma16816(acc[n + 1], a, b[2], b[3]);
        }
    }
}

// warp_abt for two independent products in one loop: acc1 += A1 B1^T, acc2 += A2 B2^T. Four
// accumulator chains per k step instead of two, in the written order (ldmatrix and mma are
// volatile asm: no relying on the compiler to interleave two back-to-back warp_abt calls).
template <int NT8, int K, int S>
__device__ __forceinline__ void warp_abt2(float (&acc1)[NT8][4], float (&acc2)[NT8][4], uint32_t a1_base, uint32_t b1_base,
                                          uint32_t a2_base, uint32_t b2_base, int lane) {
    static_assert(NT8 % 2 == 0 && K % 16 == 0, "bad warp_abt2 shape");
    const int mi = lane >> 3, r = lane & 7;
    const uint32_t a_off = (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
    const uint32_t b_off = (uint32_t)(((r + (mi >> 1) * 8) * S + (mi & 1) * 8) * 2);
#pragma unroll
    for (int k = 0; k < K; k += 16) {
        uint32_t a1[4], a2[4];
        ldsm4(a1, a1_base + a_off + k * 2);
        ldsm4(a2, a2_base + a_off + k * 2);
#pragma unroll
        for (int n = 0; n < NT8; n += 2) {
            uint32_t b1[4], b2[4];
            ldsm4(b1, b1_base + b_off + (uint32_t)((n * 8 * S + k) * 2));
            ldsm4(b2, b2_base + b_off + (uint32_t)((n * 8 * S + k) * 2));
            mma16816(acc1[n], a1, b1[0], b1[1]);
            mma16816(acc1[n + 1], a1, b1[2], b1[3]);
            mma16816(acc2[n], a2, b2[0], b2[1]);
            mma16816(acc2[n + 1], a2, b2[2], b2[3]);
        }
    }
}

template <int DP, bool KV>
__global__ void __launch_bounds__(Bwd2Cfg<DP>::NTH, Bwd2Cfg<DP>::MINB)
tc_bwd2_k(const uint16_t *f1, const uint16_t *f2, const uint16_t *x1, const uint16_t *x2, const float *lse,
          const float *delta, uint16_t *g1, uint16_t *g2, int L, int H, int D, float scale, float scale_log2, int ntiles) {
    using F = Bwd2Cfg<DP>;
    constexpr int S = F::S, SP = F::SP, BR = F::BR, BC = F::BC, QW = F::QW, CW = F::CW, NTH = F::NTH;
    extern __shared__ uint4 tc_smem[];
    uint16_t *F1s = reinterpret_cast<uint16_t *>(tc_smem);   // [BR][S]
    uint16_t *F2s = F1s + BR * S;                             // [BR][S]
    uint16_t *X1s = F2s + BR * S;                             // [2][BC][S]
    uint16_t *X2s = X1s + 2 * BC * S;                         // [2][BC][S]
    uint16_t *dSs = X2s + 2 * BC * S;                         // [BR][SP]
    uint16_t *Ps = dSs + BR * SP;                             // [BR][SP] (KV)
    float *lse_s = reinterpret_cast<float *>(Ps + BR * SP);   // [2][BC] (KV) log2 units
    float *del_s = lse_s + 2 * BC;                            // [2][BC] (KV)
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int r0 = bp.tile * BR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int rg = warp & 3, cg = warp >> 2;
    const uint16_t *x1b = x1 + bp.base, *x2b = x2 + bp.base;
    const float *lse_bh = lse + bp.bh * L, *del_bh = delta + bp.bh * L;
    const int nt = (L + BC - 1) / BC;

    load_rows<BR, DP, NTH>(F1s, f1 + bp.base, C, r0, L, D);
    load_rows<BR, DP, NTH>(F2s, f2 + bp.base, C, r0, L, D);
    load_rows<BC, DP, NTH>(X1s, x1b, C, 0, L, D);
    load_rows<BC, DP, NTH>(X2s, x2b, C, 0, L, D);
    cp_commit();
    float rl[2] = {0.0f, 0.0f}, rd[2] = {0.0f, 0.0f};   // dQ: this lane's two rows
    if (KV) {
        for (int i = threadIdx.x; i < BC; i += NTH) {
            lse_s[i] = i < L ? lse_bh[i] * kLog2e : 0.0f;
            del_s[i] = i < L ? del_bh[i] : 0.0f;
        }
    } else {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int row = r0 + rg * 16 + g + 8 * h;
            rl[h] = row < L ? lse_bh[row] * kLog2e : 0.0f;
            rd[h] = row < L ? del_bh[row] : 0.0f;
        }
    }

    float acc1[CW / 8][4], acc2[CW / 8][4];   // acc2 (dV) is dead code in the dQ role
    zero(acc1);
    zero(acc2);
    const uint32_t f1_addr = smem_u32(F1s + rg * 16 * S), f2_addr = smem_u32(F2s + rg * 16 * S);
    const uint32_t ds_addr = smem_u32(dSs + rg * 16 * SP), p_addr = smem_u32(Ps + rg * 16 * SP);
    // Two barriers per tile. The prefetch of tile j+1 goes out AFTER the first one: every warp
    // has then finished tile j-1, the last reader of the buffers (and of P / dS) it overwrites.
    for (int j = 0; j < nt; j++) {
        const int cur = j & 1, nxt = cur ^ 1, c1 = (j + 1) * BC;
        cp_wait<0>();   // tile j (and F1, F2) landed: the only group in flight
        __syncthreads();
        if (j + 1 < nt) {
            load_rows<BC, DP, NTH>(X1s + nxt * BC * S, x1b, C, c1, L, D);
            load_rows<BC, DP, NTH>(X2s + nxt * BC * S, x2b, C, c1, L, D);
            cp_commit();
            if (KV)
                for (int i = threadIdx.x; i < BC; i += NTH) {
                    lse_s[nxt * BC + i] = c1 + i < L ? lse_bh[c1 + i] * kLog2e : 0.0f;
                    del_s[nxt * BC + i] = c1 + i < L ? del_bh[c1 + i] : 0.0f;
                }
        }
        const uint16_t *X1c = X1s + cur * BC * S, *X2c = X2s + cur * BC * S;
        float s[QW / 8][4], dp[QW / 8][4];
        zero(s);
        zero(dp);
        warp_abt2<QW / 8, DP, S>(s, dp, f1_addr, smem_u32(X1c + cg * QW * S), f2_addr, smem_u32(X2c + cg * QW * S), lane);
#pragma unroll
        for (int n = 0; n < QW / 8; n++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int col = cg * QW + n * 8 + 2 * t;   // within the tile
#pragma unroll
                for (int e2 = 0; e2 < 2; e2++) {
                    const int e = 2 * h + e2;
                    const float l2 = KV ? lse_s[cur * BC + col + e2] : rl[h];
                    const float dl = KV ? del_s[cur * BC + col + e2] : rd[h];
                    // Streamed rows past L must add nothing.
                    const float p = j * BC + col + e2 < L ? fast_exp2(s[n][e] * scale_log2 - l2) : 0.0f;
                    s[n][e] = p;
                    dp[n][e] = p * (dp[n][e] - dl);
                }
                const int off = (rg * 16 + g + 8 * h) * SP + col;
                *reinterpret_cast<uint32_t *>(dSs + off) = pack_bf16(dp[n][2 * h], dp[n][2 * h + 1]);
                if (KV) *reinterpret_cast<uint32_t *>(Ps + off) = pack_bf16(s[n][2 * h], s[n][2 * h + 1]);
            }
        __syncthreads();   // the block's P / dS rows of tile j complete
        warp_ab_s<BC / 16, CW / 8, SP, S>(acc1, ds_addr, smem_u32(X1c + cg * CW), lane);
        if (KV) warp_ab_s<BC / 16, CW / 8, SP, S>(acc2, p_addr, smem_u32(X2c + cg * CW), lane);
    }
    // dK then dV by the same lanes at the same positions: exact when they are one buffer.
    const int c0 = cg * CW;
    if (g1) store_frag_acc<CW / 8>(g1 + bp.base + c0, C, r0 + rg * 16, L, D - c0, scale, acc1, lane);
    if (KV && g2) store_frag_acc<CW / 8>(g2 + bp.base + c0, C, r0 + rg * 16, L, D - c0, 1.0f, acc2, lane);
}

// ---- host side ------------------------------------------------------------------------------
int bucket(int D) { return D <= 32 ? 32 : D <= 64 ? 64 : D <= 128 ? 128 : 256; }

bool aligned16(const void *p) { return p == nullptr || ((uintptr_t)p & 15u) == 0; }

// Whether this device runs the mma.sync kernels with `smem` bytes of dynamic shared memory.
bool device_ok(size_t smem) {
    int dev = 0, major = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) return false;
    return major >= 8 && smem <= (size_t)optin;
}

// DDX_ATTN_FWD_V1=1 (any value but "0" or empty): the double-buffered forward kernel, kept as a fallback
// and for comparison. Read once per process.
bool fwd_v1() {
    static int v = -1;
    if (v < 0) {
        const char *e = ddx_tune_raw(DDX_TUNE_ATTN_FWD_V1);
        v = e && *e && strcmp(e, "0") != 0 ? 1 : 0;
    }
    return v == 1;
}
// DDX_ATTN_FWD_MT=1: the default forward with one m16 row tile per warp at every head_dim. Read once.
bool fwd_mt1() {
    static int v = -1;
    if (v < 0) {
        const char *e = ddx_tune_raw(DDX_TUNE_ATTN_FWD_MT);
        v = e && strcmp(e, "1") == 0 ? 1 : 0;
    }
    return v == 1;
}
template <int DP> size_t fwd2_smem() {
    return fwd_mt1() ? Fwd2Cfg<DP, 1>::smem : Fwd2Cfg<DP, fwd2_mt_default<DP>()>::smem;
}

size_t fwd_smem(int D) {
    const bool v1 = fwd_v1();
    switch (bucket(D)) {
    case 32: return v1 ? TCfg<32>::fwd_smem : fwd2_smem<32>();
    case 64: return v1 ? TCfg<64>::fwd_smem : fwd2_smem<64>();
    case 128: return v1 ? TCfg<128>::fwd_smem : fwd2_smem<128>();
    default: return v1 ? TCfg<256>::fwd_smem : fwd2_smem<256>();
    }
}
size_t bwd1_smem(int D) {
    auto mx = [](size_t a, size_t b) { return a > b ? a : b; };
    switch (bucket(D)) {
    case 32: return mx(TCfg<32>::dq_smem, TCfg<32>::kv_smem);
    case 64: return mx(TCfg<64>::dq_smem, TCfg<64>::kv_smem);
    case 128: return mx(TCfg<128>::dq_smem, TCfg<128>::kv_smem);
    default: return mx(TCfg<256>::dq_smem, TCfg<256>::kv_smem);
    }
}
size_t bwd2_smem(int D) {
    auto mx = [](size_t a, size_t b) { return a > b ? a : b; };
    switch (bucket(D)) {
    case 32: return mx(Bwd2Cfg<32>::smem_kv, Bwd2Cfg<32>::smem_dq);
    case 64: return mx(Bwd2Cfg<64>::smem_kv, Bwd2Cfg<64>::smem_dq);
    case 128: return mx(Bwd2Cfg<128>::smem_kv, Bwd2Cfg<128>::smem_dq);
    default: return mx(Bwd2Cfg<256>::smem_kv, Bwd2Cfg<256>::smem_dq);
    }
}
// DDX_ATTN_BWD_V1=1 (any value but "0" or empty): the backward kernels that recompute S per role. Read once.
bool bwd_v1_env() {
    static int v = -1;
    if (v < 0) {
        const char *e = ddx_tune_raw(DDX_TUNE_ATTN_BWD_V1);
        v = e && *e && strcmp(e, "0") != 0 ? 1 : 0;
    }
    return v == 1;
}
// Which tensor-core backward runs at this head_dim on this device: 2, 1, or 0 (neither fits:
// the SIMT kernels). The default backward wants 217 KB at DP = 256; a device with less opt-in shared memory
// (A100: 163 KB) runs the recomputing kernels there.
int bwd_variant(int D) {
    if (!bwd_v1_env() && device_ok(bwd2_smem(D))) return 2;
    return device_ok(bwd1_smem(D)) ? 1 : 0;
}

// The shapes the tensor-core kernels take (the rest go to the SIMT kernels).
bool shape_ok(int64_t L, int D) { return D >= 8 && D <= 256 && D % 8 == 0 && L >= 1 && L <= INT_MAX - 256; }

template <typename K> cudaError_t set_smem(K kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

template <int DP, int MT>
cudaError_t fwd2_launch(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int64_t N,
                        int64_t L, int heads, int D, float scale, cudaStream_t st);

template <int DP>
cudaError_t fwd_launch(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int64_t N,
                       int64_t L, int heads, int D, float scale, cudaStream_t st) {
    int ntiles;
    unsigned blocks;
    cudaError_t e;
    if (fwd_v1()) {
        using F = TCfg<DP>;
        if (!grid_of<BM>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        auto kern = tc_fwd_k<DP, F::FWD_BN>;
        if ((e = set_smem(kern, F::fwd_smem)) != cudaSuccess) return e;
        kern<<<blocks, NT, F::fwd_smem, st>>>(q, k, v, out, lse, (int)L, heads, D, scale * kLog2e, ntiles);
        return cudaGetLastError();
    }
    return fwd_mt1() ? fwd2_launch<DP, 1>(q, k, v, out, lse, N, L, heads, D, scale, st)
                     : fwd2_launch<DP, fwd2_mt_default<DP>()>(q, k, v, out, lse, N, L, heads, D, scale, st);
}

template <int DP, int MT>
cudaError_t fwd2_launch(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int64_t N,
                        int64_t L, int heads, int D, float scale, cudaStream_t st) {
    using F = Fwd2Cfg<DP, MT>;
    int ntiles;
    unsigned blocks;
    cudaError_t e;
    if (!grid_of<F::BMR>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
    auto kern = tc_fwd2_k<DP, MT>;
    if ((e = set_smem(kern, F::smem)) != cudaSuccess) return e;
    // Several blocks per SM need the whole 228 KB as shared memory (the kernel barely uses L1:
    // cp.async.cg bypasses it). A hint; the launch works whatever the driver does with it.
    if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared)) !=
        cudaSuccess)
        return e;
    kern<<<blocks, NT, F::smem, st>>>(q, k, v, out, lse, (int)L, heads, D, scale * kLog2e, ntiles);
    return cudaGetLastError();
}

template <int DP>
cudaError_t bwd_launch(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout, const float *lse,
                       const float *delta, uint16_t *dq, uint16_t *dk, uint16_t *dv, int64_t N, int64_t L, int heads, int D,
                       float scale, cudaStream_t st) {
    using F = TCfg<DP>;
    const float scale_log2 = scale * kLog2e;
    cudaError_t e;
    int ntiles;
    unsigned blocks;
    if (bwd_variant(D) == 2) {
        using F2 = Bwd2Cfg<DP>;
        // dK and dV (one launch), then dQ: stream order keeps aliased grads exact.
        if (dk || dv) {
            if (!grid_of<F2::BR>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
            auto kern = tc_bwd2_k<DP, true>;
            if ((e = set_smem(kern, F2::smem_kv)) != cudaSuccess) return e;
            if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                                          cudaSharedmemCarveoutMaxShared)) != cudaSuccess)
                return e;
            kern<<<blocks, F2::NTH, F2::smem_kv, st>>>(k, v, q, dout, lse, delta, dk, dv, (int)L, heads, D, scale,
                                                        scale_log2, ntiles);
            if ((e = cudaGetLastError()) != cudaSuccess) return e;
        }
        if (dq) {
            if (!grid_of<F2::BR>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
            auto kern = tc_bwd2_k<DP, false>;
            if ((e = set_smem(kern, F2::smem_dq)) != cudaSuccess) return e;
            if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                                          cudaSharedmemCarveoutMaxShared)) != cudaSuccess)
                return e;
            kern<<<blocks, F2::NTH, F2::smem_dq, st>>>(q, dout, k, v, lse, delta, dq, nullptr, (int)L, heads, D, scale,
                                                        scale_log2, ntiles);
            if ((e = cudaGetLastError()) != cudaSuccess) return e;
        }
        return cudaSuccess;
    }
    // dK, then dV, then dQ: stream order keeps aliased grads (k and v, or q and k, one tensor) exact.
    if (dk || dv) {
        if (!grid_of<BKV>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        // (BOTH is only instantiated where it fits in registers.)
        constexpr int BOTH = DP <= 128 ? (KV_DK | KV_DV) : KV_DK;
        if (DP <= 128 && dk && dv) {
            auto kern = tc_dkv_k<DP, F::KV_BQ, BOTH>;
            if ((e = set_smem(kern, F::kv_smem)) != cudaSuccess) return e;
            kern<<<blocks, NT, F::kv_smem, st>>>(q, k, v, dout, lse, delta, dk, dv, (int)L, heads, D, scale, scale_log2,
                                                  ntiles);
            if ((e = cudaGetLastError()) != cudaSuccess) return e;
        } else {
            if (dk) {
                auto kern = tc_dkv_k<DP, F::KV_BQ, KV_DK>;
                if ((e = set_smem(kern, F::kv_smem)) != cudaSuccess) return e;
                kern<<<blocks, NT, F::kv_smem, st>>>(q, k, v, dout, lse, delta, dk, nullptr, (int)L, heads, D, scale,
                                                      scale_log2, ntiles);
                if ((e = cudaGetLastError()) != cudaSuccess) return e;
            }
            if (dv) {
                auto kern = tc_dkv_k<DP, F::KV_BQ, KV_DV>;
                if ((e = set_smem(kern, F::kv_smem)) != cudaSuccess) return e;
                kern<<<blocks, NT, F::kv_smem, st>>>(q, k, v, dout, lse, delta, nullptr, dv, (int)L, heads, D, scale,
                                                      scale_log2, ntiles);
                if ((e = cudaGetLastError()) != cudaSuccess) return e;
            }
        }
    }
    if (dq) {
        if (!grid_of<BM>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        auto kern = tc_dq_k<DP, F::DQ_BN>;
        if ((e = set_smem(kern, F::dq_smem)) != cudaSuccess) return e;
        kern<<<blocks, NT, F::dq_smem, st>>>(q, k, v, dout, lse, delta, dq, (int)L, heads, D, scale, scale_log2, ntiles);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    return cudaSuccess;
}

}  // namespace tc
