// Part of kernels/attention.cu, included inside its anonymous namespace after its constants
// (not a standalone header): the fp32 SIMT attention kernels (any dtype and head_dim) and
// their host side; attention.cu's opening comment describes them.
// Four consecutive elements at a 4-element-aligned address (16 bytes f32, 8 bytes bf16).
__device__ __forceinline__ float4 load4(const float *p) { return *reinterpret_cast<const float4 *>(p); }
__device__ __forceinline__ float4 load4(const uint16_t *p) {
    const uint2 r = *reinterpret_cast<const uint2 *>(p);
    return make_float4(__uint_as_float(r.x << 16), __uint_as_float(r.x & 0xffff0000u), __uint_as_float(r.y << 16),
                       __uint_as_float(r.y & 0xffff0000u));
}
__device__ __forceinline__ void store4(float *p, float4 v) { *reinterpret_cast<float4 *>(p) = v; }
__device__ __forceinline__ void store4(uint16_t *p, float4 v) {
    uint2 r;
    r.x = (uint32_t)f32_to_bf16(v.x) | ((uint32_t)f32_to_bf16(v.y) << 16);
    r.y = (uint32_t)f32_to_bf16(v.z) | ((uint32_t)f32_to_bf16(v.w) << 16);
    *reinterpret_cast<uint2 *>(p) = r;
}

// row[c .. c+3] (= or +=) v, guarded by D. vec: head_dim % 4 == 0 and every pointer aligned,
// so a chunk that starts inside the row lies wholly inside it.
template <bool ACC, typename T> __device__ __forceinline__ void put_chunk(T *row, int c, int D, float4 v, bool vec) {
    if (vec) {
        if (ACC) {
            const float4 o = load4(row + c);
            v.x += o.x;
            v.y += o.y;
            v.z += o.z;
            v.w += o.w;
        }
        store4(row + c, v);
        return;
    }
    const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int t = 0; t < 4; t++)
        if (c + t < D) row[c + t] = from_f<T>(ACC ? to_f(row[c + t]) + e[t] : e[t]);
}

__host__ __device__ constexpr int round4(int d) { return (d + 3) & ~3; }
// Row stride of a [rows][head_dim] shared tile: a multiple of 4 with dp/4 odd.
__host__ __device__ constexpr int pad_of(int d4) { return (d4 & 7) == 0 ? d4 + 4 : d4; }

// ---- tile load ----------------------------------------------------------------------------
// dst[r][c] = src[(row0 + r) * C + c] for r < R, c < D; zero for rows >= L and for columns
// [D, round4(D)). src points at (item, row 0, head column 0). Each warp takes whole rows, its
// lanes consecutive columns (coalesced).
template <int R, typename T>
__device__ __forceinline__ void load_tile(float *dst, int dp, const T *src, int64_t C, int row0, int L, int D, bool vec) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int d4 = round4(D);
    for (int r = warp; r < R; r += NT / 32) {
        float *drow = dst + (int64_t)r * dp;
        const int row = row0 + r;
        if (row < L) {
            const T *srow = src + (int64_t)row * C;
            if (vec) {
                for (int c = lane * 4; c < D; c += 128) store4(drow + c, load4(srow + c));
            } else {
                for (int c = lane; c < d4; c += 32) drow[c] = c < D ? to_f(srow[c]) : 0.0f;
            }
        } else {
            for (int c = lane * 4; c < d4; c += 128) store4(drow + c, make_float4(0.f, 0.f, 0.f, 0.f));
        }
    }
}

// ---- C = A B^T over the head dimension ----------------------------------------------------
// A [BM][dp], B [BN][dp] in shared memory. Thread (tr, tc) of a TR x TC grid computes rows
// tr + TR*i and columns tc + TC*j. A warp reads TC consecutive B rows (distinct bank groups)
// and 32/TC A rows (broadcast), one float4 each per 4 columns of d.
template <int BM, int BN> struct AbtMap {
    static constexpr int TR = BM < 16 ? BM : 16;
    static constexpr int TC = NT / TR;
    static constexpr int SR = BM / TR;
    static constexpr int SC = BN / TC;
    static_assert(TR * TC == NT && SR * TR == BM && SC * TC == BN && SC >= 1, "bad A B^T tiling");
};

template <int BM, int BN>
__device__ __forceinline__ void gemm_abt(const float *A, const float *B, int dp, int d4,
                                         float (&acc)[AbtMap<BM, BN>::SR][AbtMap<BM, BN>::SC]) {
    using M = AbtMap<BM, BN>;
    const int tr = threadIdx.x / M::TC, tc = threadIdx.x % M::TC;
#pragma unroll
    for (int i = 0; i < M::SR; i++)
#pragma unroll
        for (int j = 0; j < M::SC; j++) acc[i][j] = 0.0f;
    const float *a0 = A + (int64_t)tr * dp, *b0 = B + (int64_t)tc * dp;
#pragma unroll 2
    for (int d = 0; d < d4; d += 4) {
        float4 a[M::SR], b[M::SC];
#pragma unroll
        for (int i = 0; i < M::SR; i++) a[i] = load4(a0 + (int64_t)i * M::TR * dp + d);
#pragma unroll
        for (int j = 0; j < M::SC; j++) b[j] = load4(b0 + (int64_t)j * M::TC * dp + d);
#pragma unroll
        for (int i = 0; i < M::SR; i++)
#pragma unroll
            for (int j = 0; j < M::SC; j++) {
                float s = acc[i][j];
                s = fmaf(a[i].x, b[j].x, s);
                s = fmaf(a[i].y, b[j].y, s);
                s = fmaf(a[i].z, b[j].z, s);
                s = fmaf(a[i].w, b[j].w, s);
                acc[i][j] = s;
            }
    }
}

// ---- acc += A B with B over the head dimension --------------------------------------------
// A [BM][as] (as >= BK, a multiple of 4), B [BK][dp]. Thread (rt, ct) of an RT x CT grid owns
// rows rt + RT*i and the 4-column chunks ct + CT*j (columns 4*chunk .. +3) of a DMAX-wide
// row; chunks at or past round4(D) are skipped.
template <int BM, int DMAX> struct AbMap {
    static constexpr int CT = DMAX / 4 < 32 ? DMAX / 4 : 32;
    static constexpr int RT = NT / CT;
    static constexpr int RPT = BM / RT;
    static constexpr int CPT = DMAX / (4 * CT);
    static_assert(CT * RT == NT && RPT * RT == BM && CPT * CT * 4 == DMAX && RPT >= 1, "bad A B tiling");
};

template <int BM, int BK, int DMAX>
__device__ __forceinline__ void gemm_ab_acc(const float *A, int as, const float *B, int dp, int d4,
                                            float (&acc)[AbMap<BM, DMAX>::RPT][AbMap<BM, DMAX>::CPT][4]) {
    using M = AbMap<BM, DMAX>;
    static_assert(BK % 4 == 0, "BK must be a multiple of 4");
    const int rt = threadIdx.x / M::CT, ct = threadIdx.x % M::CT;
    const int nchunk = d4 / 4;
#pragma unroll 2
    for (int k = 0; k < BK; k += 4) {
        float4 a[M::RPT];
#pragma unroll
        for (int i = 0; i < M::RPT; i++) a[i] = load4(A + (int64_t)(rt + M::RT * i) * as + k);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
#pragma unroll
            for (int j = 0; j < M::CPT; j++) {
                const int ch = ct + M::CT * j;
                if (ch >= nchunk) continue;
                const float4 b = load4(B + (int64_t)(k + kk) * dp + 4 * ch);
#pragma unroll
                for (int i = 0; i < M::RPT; i++) {
                    const float av = kk == 0 ? a[i].x : kk == 1 ? a[i].y : kk == 2 ? a[i].z : a[i].w;
                    acc[i][j][0] = fmaf(av, b.x, acc[i][j][0]);
                    acc[i][j][1] = fmaf(av, b.y, acc[i][j][1]);
                    acc[i][j][2] = fmaf(av, b.z, acc[i][j][2]);
                    acc[i][j][3] = fmaf(av, b.w, acc[i][j][3]);
                }
            }
        }
    }
}

// Writes (ACC: adds) mul * acc into rows row0 + rt + RT*i (< L) of dst (item/head origin).
template <bool ACC, int BM, int DMAX, typename T>
__device__ __forceinline__ void store_rows(T *dst, int64_t C, int row0, int L, int D, bool vec, float mul,
                                           const float (&acc)[AbMap<BM, DMAX>::RPT][AbMap<BM, DMAX>::CPT][4],
                                           const float *row_mul /* [BM] or nullptr */) {
    using M = AbMap<BM, DMAX>;
    const int rt = threadIdx.x / M::CT, ct = threadIdx.x % M::CT;
#pragma unroll
    for (int i = 0; i < M::RPT; i++) {
        const int r = rt + M::RT * i;
        if (row0 + r >= L) continue;
        const float m = row_mul ? mul * row_mul[r] : mul;
        T *drow = dst + (int64_t)(row0 + r) * C;
#pragma unroll
        for (int j = 0; j < M::CPT; j++) {
            const int c = 4 * (ct + M::CT * j);
            if (c >= D) continue;
            put_chunk<ACC>(drow, c, D, make_float4(m * acc[i][j][0], m * acc[i][j][1], m * acc[i][j][2], m * acc[i][j][3]),
                           vec);
        }
    }
}

template <int BM, int DMAX>
__device__ __forceinline__ void zero_acc(float (&acc)[AbMap<BM, DMAX>::RPT][AbMap<BM, DMAX>::CPT][4]) {
#pragma unroll
    for (int i = 0; i < AbMap<BM, DMAX>::RPT; i++)
#pragma unroll
        for (int j = 0; j < AbMap<BM, DMAX>::CPT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
}

// ---- tile configuration per head_dim bucket -----------------------------------------------
// F*: forward (query rows, keys per tile); KV*: dK/dV kernel (keys, query rows per tile);
// Q*: dQ kernel (query rows, keys per tile).
template <int DMAX> struct Cfg;
template <> struct Cfg<32> { static constexpr int FQ = 32, FK = 32, KVK = 32, KVQ = 32, QQ = 32, QK = 32; };
template <> struct Cfg<64> { static constexpr int FQ = 64, FK = 32, KVK = 32, KVQ = 32, QQ = 64, QK = 32; };
template <> struct Cfg<128> { static constexpr int FQ = 32, FK = 32, KVK = 32, KVQ = 32, QQ = 32, QK = 32; };
template <> struct Cfg<256> { static constexpr int FQ = 32, FK = 32, KVK = 16, KVQ = 32, QQ = 32, QK = 32; };
template <> struct Cfg<512> { static constexpr int FQ = 16, FK = 32, KVK = 8, KVQ = 16, QQ = 16, QK = 32; };

// Shared-memory floats of each kernel at a row stride dp (layouts in the kernels).
template <int BQ, int BK> constexpr size_t fwd_floats(int dp) { return (size_t)(BQ + BK) * dp + (size_t)BQ * (BK + 4) + BQ; }
template <int BK, int BQ> constexpr size_t dkv_floats(int dp) {
    return (size_t)(2 * BK + 2 * BQ) * dp + (size_t)2 * BK * (BQ + 4) + 2 * BQ;
}
template <int BQ, int BK> constexpr size_t dq_floats(int dp) { return (size_t)(2 * BQ + BK) * dp + (size_t)BQ * (BK + 4) + 2 * BQ; }

// Block index -> (item, head, tile); base offset of (item, row 0, head column 0).
struct BlockPos {
    int64_t bh;     // item * heads + head: the row of lse/delta
    int64_t base;   // element offset into q/k/v/out
    int tile;
};
__device__ __forceinline__ BlockPos block_pos(int ntiles, int L, int H, int D) {
    BlockPos p;
    p.tile = (int)(blockIdx.x % (unsigned)ntiles);
    p.bh = blockIdx.x / (unsigned)ntiles;
    const int64_t n = p.bh / H, h = p.bh % H;
    p.base = n * L * ((int64_t)H * D) + h * D;
    return p;
}

// ---- forward ------------------------------------------------------------------------------
template <int DMAX, int BQ, int BK, typename T>
__global__ void __launch_bounds__(NT)
attn_fwd_k(const T *q, const T *k, const T *v, T *out, float *lse, int L, int H, int D, float scale_log2, int ntiles, int vec) {
    extern __shared__ float4 smem4[];
    float *sm = reinterpret_cast<float *>(smem4);
    const int d4 = round4(D), dp = pad_of(d4);
    constexpr int SS = BK + 4;
    float *Qs = sm;                                    // [BQ][dp]
    float *KVs = Qs + (int64_t)BQ * dp;                // [BK][dp]: K, then V of the same keys
    float *Ss = KVs + (int64_t)BK * dp;                // [BQ][SS]: scores, then P
    float *rowf = Ss + BQ * SS;                        // [BQ]: alpha per tile, then 1/l
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BQ;
    using SM = AbtMap<BQ, BK>;
    using OM = AbMap<BQ, DMAX>;
    // Softmax row pass: TPR consecutive threads (inside one warp) share row rr.
    constexpr int TPR = NT / BQ;
    static_assert(TPR * BQ == NT && TPR <= 32, "rows must split the block evenly");
    const int rr = threadIdx.x / TPR, sub = threadIdx.x % TPR;
    const int tr = threadIdx.x / SM::TC, tc = threadIdx.x % SM::TC;
    const int rt = threadIdx.x / OM::CT;

    load_tile<BQ>(Qs, dp, q + bp.base, C, q0, L, D, vec);
    float m = -INFINITY, l = 0.0f;   // row rr's running max (log2 units) and sum
    float acc[OM::RPT][OM::CPT][4];
    zero_acc<BQ, DMAX>(acc);

    for (int k0 = 0; k0 < L; k0 += BK) {
        load_tile<BK>(KVs, dp, k + bp.base, C, k0, L, D, vec);
        __syncthreads();
        {
            float s[SM::SR][SM::SC];
            gemm_abt<BQ, BK>(Qs, KVs, dp, d4, s);
#pragma unroll
            for (int i = 0; i < SM::SR; i++)
#pragma unroll
                for (int j = 0; j < SM::SC; j++) {
                    const int col = tc + SM::TC * j;
                    Ss[(tr + SM::TR * i) * SS + col] = k0 + col < L ? s[i][j] * scale_log2 : -INFINITY;
                }
        }
        __syncthreads();   // scores complete; K no longer needed
        {
            float *row = Ss + rr * SS;
            float mx = -INFINITY;
            for (int c = sub; c < BK; c += TPR) mx = fmaxf(mx, row[c]);
#pragma unroll
            for (int o = TPR / 2; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            // Key k0 < L is valid, so mx and m_new are finite; the first tile's alpha is 0.
            const float m_new = fmaxf(m, mx);
            float sum = 0.0f;
            for (int c = sub; c < BK; c += TPR) {
                const float p = exp2f(row[c] - m_new);
                row[c] = p;
                sum += p;
            }
#pragma unroll
            for (int o = TPR / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            const float alpha = exp2f(m - m_new);
            l = l * alpha + sum;
            m = m_new;
            if (sub == 0) rowf[rr] = alpha;
        }
        load_tile<BK>(KVs, dp, v + bp.base, C, k0, L, D, vec);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < OM::RPT; i++) {
            const float a = rowf[rt + OM::RT * i];
#pragma unroll
            for (int j = 0; j < OM::CPT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[i][j][e] *= a;
        }
        gemm_ab_acc<BQ, BK, DMAX>(Ss, SS, KVs, dp, d4, acc);
        __syncthreads();   // P and V consumed before the next tile overwrites them
    }
    if (sub == 0) {
        rowf[rr] = 1.0f / l;
        if (q0 + rr < L) lse[bp.bh * L + q0 + rr] = (m + log2f(l)) * kLn2;
    }
    __syncthreads();
    store_rows<false, BQ, DMAX>(out + bp.base, C, q0, L, D, vec, 1.0f, acc, rowf);
}

// ---- backward: delta_i = dO_i . O_i ---------------------------------------------------------
// Row w of the [N*L*heads, D] view is (item, position, head) = w's [N, L, heads] index; its
// elements start at w * D. delta is [N, heads, L].
template <typename T>
__global__ void __launch_bounds__(256) attn_delta_k(const T *o, const T *dout, float *delta, int64_t rows, int L, int H, int D) {
    const int lane = threadIdx.x & 31;
    const int64_t stride = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; w < rows; w += stride) {
        const T *orow = o + w * D, *drow = dout + w * D;
        float s = 0.0f;
        for (int c = lane; c < D; c += 32) s = fmaf(to_f(orow[c]), to_f(drow[c]), s);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) {
            const int64_t h = w % H, ni = w / H, n = ni / L, i = ni % L;
            delta[(n * H + h) * L + i] = s;
        }
    }
}

// ---- backward: dK, dV ---------------------------------------------------------------------
template <int DMAX, int BK, int BQ, typename T>
__global__ void __launch_bounds__(NT)
attn_bwd_dkv_k(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *gk, T *gv, int L,
               int H, int D, float scale, float scale_log2, int ntiles, int vec) {
    extern __shared__ float4 smem4[];
    float *sm = reinterpret_cast<float *>(smem4);
    const int d4 = round4(D), dp = pad_of(d4);
    constexpr int PS = BQ + 4;
    float *Ks = sm;                                  // [BK][dp]
    float *Vs = Ks + (int64_t)BK * dp;               // [BK][dp]
    float *Qs = Vs + (int64_t)BK * dp;               // [BQ][dp]
    float *dOs = Qs + (int64_t)BQ * dp;              // [BQ][dp]
    float *Pt = dOs + (int64_t)BQ * dp;              // [BK][PS]  P^T
    float *dSt = Pt + BK * PS;                       // [BK][PS]  dS^T
    float *lse_s = dSt + BK * PS;                    // [BQ]  lse in log2 units
    float *del_s = lse_s + BQ;                       // [BQ]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int k0 = bp.tile * BK;
    const bool want_dk = gk != nullptr, want_dv = gv != nullptr;
    using SM = AbtMap<BK, BQ>;
    using GM = AbMap<BK, DMAX>;
    const int tr = threadIdx.x / SM::TC, tc = threadIdx.x % SM::TC;

    load_tile<BK>(Ks, dp, k + bp.base, C, k0, L, D, vec);
    if (want_dk) load_tile<BK>(Vs, dp, v + bp.base, C, k0, L, D, vec);
    float dK[GM::RPT][GM::CPT][4], dV[GM::RPT][GM::CPT][4];
    zero_acc<BK, DMAX>(dK);
    zero_acc<BK, DMAX>(dV);
    const float *lse_bh = lse + bp.bh * L, *del_bh = delta + bp.bh * L;

    for (int q0 = 0; q0 < L; q0 += BQ) {
        load_tile<BQ>(Qs, dp, q + bp.base, C, q0, L, D, vec);
        load_tile<BQ>(dOs, dp, dout + bp.base, C, q0, L, D, vec);
        for (int t = threadIdx.x; t < BQ; t += NT) {
            const bool ok = q0 + t < L;
            lse_s[t] = ok ? lse_bh[q0 + t] * kLog2e : 0.0f;
            del_s[t] = ok ? del_bh[q0 + t] : 0.0f;
        }
        __syncthreads();
        {
            float s[SM::SR][SM::SC], p[SM::SR][SM::SC];
            gemm_abt<BK, BQ>(Ks, Qs, dp, d4, s);
#pragma unroll
            for (int i = 0; i < SM::SR; i++)
#pragma unroll
                for (int j = 0; j < SM::SC; j++) {
                    const int col = tc + SM::TC * j;
                    // Query rows past L must add nothing to the keys' grads.
                    p[i][j] = q0 + col < L ? exp2f(s[i][j] * scale_log2 - lse_s[col]) : 0.0f;
                    Pt[(tr + SM::TR * i) * PS + col] = p[i][j];
                }
            if (want_dk) {
                gemm_abt<BK, BQ>(Vs, dOs, dp, d4, s);   // dP^T
#pragma unroll
                for (int i = 0; i < SM::SR; i++)
#pragma unroll
                    for (int j = 0; j < SM::SC; j++) {
                        const int col = tc + SM::TC * j;
                        dSt[(tr + SM::TR * i) * PS + col] = p[i][j] * (s[i][j] - del_s[col]);
                    }
            }
        }
        __syncthreads();
        if (want_dv) gemm_ab_acc<BK, BQ, DMAX>(Pt, PS, dOs, dp, d4, dV);
        if (want_dk) gemm_ab_acc<BK, BQ, DMAX>(dSt, PS, Qs, dp, d4, dK);
        __syncthreads();   // Q, dO, P, dS consumed before the next query tile
    }
    // One thread adds each element: dk then dv, so dk == dv (k and v one tensor) still sums both.
    if (want_dk) store_rows<true, BK, DMAX>(gk + bp.base, C, k0, L, D, vec, scale, dK, nullptr);
    if (want_dv) store_rows<true, BK, DMAX>(gv + bp.base, C, k0, L, D, vec, 1.0f, dV, nullptr);
}

// ---- backward: dQ -------------------------------------------------------------------------
template <int DMAX, int BQ, int BK, typename T>
__global__ void __launch_bounds__(NT)
attn_bwd_dq_k(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *gq, int L, int H,
              int D, float scale, float scale_log2, int ntiles, int vec) {
    extern __shared__ float4 smem4[];
    float *sm = reinterpret_cast<float *>(smem4);
    const int d4 = round4(D), dp = pad_of(d4);
    constexpr int SS = BK + 4;
    float *Qs = sm;                                  // [BQ][dp]
    float *dOs = Qs + (int64_t)BQ * dp;              // [BQ][dp]
    float *KVs = dOs + (int64_t)BQ * dp;             // [BK][dp]: V, then K of the same keys
    float *dSs = KVs + (int64_t)BK * dp;             // [BQ][SS]
    float *lse_s = dSs + BQ * SS;                    // [BQ]  log2 units
    float *del_s = lse_s + BQ;                       // [BQ]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BQ;
    using SM = AbtMap<BQ, BK>;
    using GM = AbMap<BQ, DMAX>;
    const int tr = threadIdx.x / SM::TC, tc = threadIdx.x % SM::TC;

    load_tile<BQ>(Qs, dp, q + bp.base, C, q0, L, D, vec);
    load_tile<BQ>(dOs, dp, dout + bp.base, C, q0, L, D, vec);
    for (int t = threadIdx.x; t < BQ; t += NT) {
        const bool ok = q0 + t < L;
        lse_s[t] = ok ? lse[bp.bh * L + q0 + t] * kLog2e : 0.0f;
        del_s[t] = ok ? delta[bp.bh * L + q0 + t] : 0.0f;
    }
    float dQ[GM::RPT][GM::CPT][4];
    zero_acc<BQ, DMAX>(dQ);

    for (int k0 = 0; k0 < L; k0 += BK) {
        load_tile<BK>(KVs, dp, v + bp.base, C, k0, L, D, vec);
        __syncthreads();
        float dpv[SM::SR][SM::SC];
        gemm_abt<BQ, BK>(dOs, KVs, dp, d4, dpv);
        __syncthreads();   // V consumed
        load_tile<BK>(KVs, dp, k + bp.base, C, k0, L, D, vec);
        __syncthreads();
        {
            float s[SM::SR][SM::SC];
            gemm_abt<BQ, BK>(Qs, KVs, dp, d4, s);
#pragma unroll
            for (int i = 0; i < SM::SR; i++)
#pragma unroll
                for (int j = 0; j < SM::SC; j++) {
                    const int row = tr + SM::TR * i, col = tc + SM::TC * j;
                    const float p = k0 + col < L ? exp2f(s[i][j] * scale_log2 - lse_s[row]) : 0.0f;
                    dSs[row * SS + col] = p * (dpv[i][j] - del_s[row]);
                }
        }
        __syncthreads();
        gemm_ab_acc<BQ, BK, DMAX>(dSs, SS, KVs, dp, d4, dQ);
        __syncthreads();   // dS and K consumed before the next tile
    }
    store_rows<true, BQ, DMAX>(gq + bp.base, C, q0, L, D, vec, scale, dQ, nullptr);
}

// ---- host side ----------------------------------------------------------------------------
template <int DMAX> size_t smem_bytes_at(int dp) {
    using F = Cfg<DMAX>;
    size_t a = fwd_floats<F::FQ, F::FK>(dp), b = dkv_floats<F::KVK, F::KVQ>(dp), c = dq_floats<F::QQ, F::QK>(dp);
    size_t m = a > b ? a : b;
    return (m > c ? m : c) * sizeof(float);
}

int bucket_of(int D) {
    if (D < 1 || D > DDX_K_ATTENTION_MAX_HEAD_DIM) return 0;
    return D <= 32 ? 32 : D <= 64 ? 64 : D <= 128 ? 128 : D <= 256 ? 256 : 512;
}

// Kernels over 48 KB of dynamic shared memory must opt in; the attribute is set to the
// bucket's largest need (head_dim = DMAX), so one value serves every head_dim of the bucket.
template <typename K> cudaError_t allow_smem(K kernel, size_t need_at_dmax) {
    if (need_at_dmax <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)need_at_dmax);
}

template <int BR> bool grid_of(int64_t N, int64_t L, int heads, int *ntiles, unsigned *blocks) {
    const int64_t nt = (L + BR - 1) / BR;
    const int64_t nb = N * heads * nt;
    if (nb <= 0 || nb > INT_MAX) return false;
    *ntiles = (int)nt;
    *blocks = (unsigned)nb;
    return true;
}

template <typename T> bool is_vec(const T *p) { return ((uintptr_t)p % (4 * sizeof(T))) == 0; }

bool shape_ok(int64_t N, int64_t L, int heads, int D) {
    // Row indices run in int with a tile of slack.
    return N >= 0 && L >= 0 && L <= INT_MAX - 128 && heads >= 1 && bucket_of(D) != 0;
}

template <int DMAX, typename T>
cudaError_t fwd_launch(const T *q, const T *k, const T *v, T *out, float *lse, int64_t N, int64_t L, int heads, int D,
                       float scale, cudaStream_t st) {
    using F = Cfg<DMAX>;
    int ntiles;
    unsigned blocks;
    if (!grid_of<F::FQ>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
    const int vec = D % 4 == 0 && is_vec(q) && is_vec(k) && is_vec(v) && is_vec(out);
    auto kern = attn_fwd_k<DMAX, F::FQ, F::FK, T>;
    cudaError_t e = allow_smem(kern, fwd_floats<F::FQ, F::FK>(pad_of(DMAX)) * sizeof(float));
    if (e != cudaSuccess) return e;
    const size_t smem = fwd_floats<F::FQ, F::FK>(pad_of(round4(D))) * sizeof(float);
    kern<<<blocks, NT, smem, st>>>(q, k, v, out, lse, (int)L, heads, D, scale * kLog2e, ntiles, vec);
    return cudaGetLastError();
}

template <typename T>
int fwd_any(const T *q, const T *k, const T *v, T *out, float *lse, int64_t N, int64_t L, int heads, int D, float scale,
            void *stream) {
    if (!shape_ok(N, L, heads, D)) return (int)cudaErrorInvalidValue;
    if (N == 0 || L == 0) return (int)cudaSuccess;
    cudaStream_t st = (cudaStream_t)stream;
    switch (bucket_of(D)) {
    case 32: return (int)fwd_launch<32>(q, k, v, out, lse, N, L, heads, D, scale, st);
    case 64: return (int)fwd_launch<64>(q, k, v, out, lse, N, L, heads, D, scale, st);
    case 128: return (int)fwd_launch<128>(q, k, v, out, lse, N, L, heads, D, scale, st);
    case 256: return (int)fwd_launch<256>(q, k, v, out, lse, N, L, heads, D, scale, st);
    default: return (int)fwd_launch<512>(q, k, v, out, lse, N, L, heads, D, scale, st);
    }
}

template <int DMAX, typename T>
cudaError_t bwd_launch(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *dq, T *dk,
                       T *dv, int64_t N, int64_t L, int heads, int D, float scale, cudaStream_t st) {
    using F = Cfg<DMAX>;
    const int vec = D % 4 == 0 && is_vec(q) && is_vec(k) && is_vec(v) && is_vec(dout) && (!dq || is_vec(dq)) &&
                    (!dk || is_vec(dk)) && (!dv || is_vec(dv));
    const float scale_log2 = scale * kLog2e;
    const int dp = pad_of(round4(D));
    cudaError_t e;
    if (dk || dv) {
        int ntiles;
        unsigned blocks;
        if (!grid_of<F::KVK>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        auto kern = attn_bwd_dkv_k<DMAX, F::KVK, F::KVQ, T>;
        if ((e = allow_smem(kern, dkv_floats<F::KVK, F::KVQ>(pad_of(DMAX)) * sizeof(float))) != cudaSuccess) return e;
        kern<<<blocks, NT, dkv_floats<F::KVK, F::KVQ>(dp) * sizeof(float), st>>>(q, k, v, dout, lse, delta, dk, dv, (int)L,
                                                                                 heads, D, scale, scale_log2, ntiles, vec);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    if (dq) {
        int ntiles;
        unsigned blocks;
        if (!grid_of<F::QQ>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        auto kern = attn_bwd_dq_k<DMAX, F::QQ, F::QK, T>;
        if ((e = allow_smem(kern, dq_floats<F::QQ, F::QK>(pad_of(DMAX)) * sizeof(float))) != cudaSuccess) return e;
        kern<<<blocks, NT, dq_floats<F::QQ, F::QK>(dp) * sizeof(float), st>>>(q, k, v, dout, lse, delta, dq, (int)L, heads,
                                                                             D, scale, scale_log2, ntiles, vec);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    return cudaSuccess;
}

template <typename T>
cudaError_t delta_launch(const T *out, const T *dout, float *delta, int64_t N, int64_t L, int heads, int D, cudaStream_t st) {
    const int64_t rows = N * L * heads;
    const int64_t want = (rows + 7) / 8;   // 8 warps per block, one row each
    const unsigned dblocks = (unsigned)(want < 4096 ? want : 4096);
    attn_delta_k<T><<<dblocks, 256, 0, st>>>(out, dout, delta, rows, (int)L, heads, D);
    return cudaGetLastError();
}

template <typename T>
int bwd_any(const T *q, const T *k, const T *v, const T *out, const T *dout, const float *lse, float *delta, T *dq, T *dk,
            T *dv, int64_t N, int64_t L, int heads, int D, float scale, void *stream) {
    if (!shape_ok(N, L, heads, D)) return (int)cudaErrorInvalidValue;
    if (N == 0 || L == 0 || (!dq && !dk && !dv)) return (int)cudaSuccess;
    cudaStream_t st = (cudaStream_t)stream;
    // delta first: both grad kernels read it.
    const cudaError_t e = delta_launch(out, dout, delta, N, L, heads, D, st);
    if (e != cudaSuccess) return (int)e;
    switch (bucket_of(D)) {
    case 32: return (int)bwd_launch<32>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    case 64: return (int)bwd_launch<64>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    case 128: return (int)bwd_launch<128>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    case 256: return (int)bwd_launch<256>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    default: return (int)bwd_launch<512>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    }
}
