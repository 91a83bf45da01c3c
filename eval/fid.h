// Feature statistics for FID / KID / IS, in fp64 (the numbers pytorch-fid and torch-fidelity
// report), plus pytorch-fid's .npz statistics files and the lookup of the Inception weights.
// Pure host code over OpenBLAS/LAPACK: no tensors, no device, no model; the caller runs the
// network (models/inception) and hands features here in batches.
#ifndef DDX_EVAL_FID_H
#define DDX_EVAL_FID_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

// Largest feature dimension an .npz file or a caller may ask for: sigma is d*d doubles, so this
// bounds what a hostile file can make ddx allocate (8192^2 * 8 B = 512 MiB).
#define DDX_FID_MAX_DIM 8192

// ---- Gaussian statistics (what a pytorch-fid .npz holds) ------------------------------------
typedef struct ddx_gauss {
    int64_t d;
    double *mu;      // [d]
    double *sigma;   // [d*d], row-major, symmetric
} ddx_gauss;

// Allocates mu and sigma for dimension d (1..DDX_FID_MAX_DIM), zero-filled.
ddx_status ddx_gauss_alloc(ddx_gauss *g, int64_t d);
void ddx_gauss_free(ddx_gauss *g);   // frees and zeroes; safe on a zeroed struct

// ---- Streaming mean and covariance ----------------------------------------------------------
// Memory is O(d^2) whatever the number of features; optionally keeps up to keep_max rows (as
// float) for KID, which needs the features themselves.
typedef struct ddx_fstats ddx_fstats;

// d: feature dimension (1..DDX_FID_MAX_DIM); keep_max: rows to keep for KID (0: none).
ddx_status ddx_fstats_create(ddx_fstats **out, int64_t d, int64_t keep_max);
void ddx_fstats_free(ddx_fstats *s);
// Adds n rows of d floats (row-major). Non-finite values are refused (DDX_E_INPUT, naming the
// row), so one NaN image cannot silently poison a 50000-sample run. Rows past keep_max are
// counted in the statistics but not kept.
ddx_status ddx_fstats_add(ddx_fstats *s, const float *x, int64_t n);
int64_t ddx_fstats_count(const ddx_fstats *s);
// mean and covariance with the N-1 denominator (numpy.cov(rowvar=False), as pytorch-fid);
// needs at least 2 rows. `out` is allocated here (ddx_gauss_free it).
ddx_status ddx_fstats_finish(const ddx_fstats *s, ddx_gauss *out);
// The kept rows (NULL and 0 when keep_max was 0). Valid until ddx_fstats_free.
const float *ddx_fstats_kept(const ddx_fstats *s, int64_t *n_rows);

// ---- Fréchet distance -----------------------------------------------------------------------
// |mu1-mu2|^2 + tr S1 + tr S2 - 2 tr sqrtm(S1 S2), as pytorch-fid's calculate_frechet_distance.
// tr sqrtm(S1 S2) = sum sqrt(max(eig(sqrt(S1) S2 sqrt(S1)), 0)), computed as the eigenvalues of
// the symmetric B S2 B^T with B = diag(sqrt l) V^T from S1 = V diag(l) V^T (LAPACK dsyevd; the
// same eigenvalues), which equals the trace of scipy's sqrtm(S1 @ S2) for covariance matrices
// without forming the non-symmetric product. Dimensions must agree.
ddx_status ddx_frechet_distance(const ddx_gauss *a, const ddx_gauss *b, double *fid);

// ---- KID (torch-fidelity's kid) -------------------------------------------------------------
typedef struct ddx_kid_opts {
    int64_t subsets;       // 100
    int64_t subset_size;   // 1000; must not exceed either feature count
    int degree;            // 3
    double gamma;          // 0: 1/d
    double coef0;          // 1
    uint32_t seed;         // 2020 (torch-fidelity's rng_seed)
    // Fixed draws for tests: subsets*subset_size row indices into each set (NULL: draw them).
    const int64_t *idx1, *idx2;
} ddx_kid_opts;

// torch-fidelity's defaults above.
ddx_kid_opts ddx_kid_defaults(void);
// Unbiased MMD^2 with the polynomial kernel (g x.y + c)^p per subset pair; mean and population
// std (numpy's np.std) over the subsets. Subsets are drawn as numpy.random.RandomState(seed)
// draws them in torch-fidelity (choice(n, size, replace=False) for set 1 then set 2, per
// subset), so the same features give torch-fidelity's formula on the same subsets (torch-fidelity
// evaluates it in float32, ddx in fp64: see docs/ARCHITECTURE.md). f1: n1 x d, f2: n2 x d floats.
ddx_status ddx_kid(const float *f1, int64_t n1, const float *f2, int64_t n2, int64_t d,
                   const ddx_kid_opts *opts, double *mean, double *std);

// ---- Inception Score (torch-fidelity's isc) -------------------------------------------------
// logits: n x classes floats (1008 for the FID Inception's fc). Rows shuffled with
// RandomState(seed).permutation(n) when shuffle is true (torch-fidelity: seed 2020, shuffle
// on), then `splits` chunks [i*n/splits, (i+1)*n/splits); per chunk exp(mean KL(p || mean p))
// in fp64; mean and population std over the chunks. n >= splits.
ddx_status ddx_inception_score(const float *logits, int64_t n, int64_t classes, int64_t splits,
                               bool shuffle, uint32_t seed, double *mean, double *std);

// ---- numpy's legacy RandomState (MT19937), for the draws above ------------------------------
typedef struct ddx_np_rng {
    uint32_t mt[624];
    int pos;
} ddx_np_rng;
void ddx_np_rng_seed(ddx_np_rng *r, uint32_t seed);
// RandomState.permutation(n) into perm[n]; choice(n, k, replace=False) is its first k.
ddx_status ddx_np_rng_permutation(ddx_np_rng *r, int64_t *perm, int64_t n);

// ---- pytorch-fid .npz statistics ------------------------------------------------------------
// Reads `mu` [d] and `sigma` [d,d] (float64 or float32, C or Fortran order) from an np.savez or
// np.savez_compressed file; other arrays are ignored. d above max_dim (0: DDX_FID_MAX_DIM), a
// member larger than its shape implies, truncation, a wrong dtype or shape: DDX_E_INPUT with
// one line naming the file and the key.
ddx_status ddx_npz_read_stats(const char *path, int64_t max_dim, ddx_gauss *out);
// Writes mu and sigma as float64 arrays in an uncompressed .npz numpy.load reads, atomically
// (runtime/outfile.h); `what` names the flag for errors ("--out").
ddx_status ddx_npz_write_stats(const char *path, const char *what, const ddx_gauss *g);

// ---- Where the Inception weights are --------------------------------------------------------
#define DDX_INCEPTION_FILE "pt_inception-2015-12-05.safetensors"
#define DDX_INCEPTION_FETCH "python3 tools/fetch_inception.py"

// Resolves the weights path into out[cap]: `explicit_path` (the --inception flag or the
// eval.inception key, named by explicit_what for messages; NULL or "" when unset), else
// $DDX_INCEPTION, else ${XDG_CACHE_HOME:-$HOME/.cache}/ddx/DDX_INCEPTION_FILE. The file must
// exist and be a regular file; otherwise DDX_E_INPUT with one line naming the path, what set it,
// and the command that fetches it. *source (may be NULL) gets explicit_what, "DDX_INCEPTION"
// or "default cache path".
ddx_status ddx_inception_path(const char *explicit_path, const char *explicit_what, char *out, size_t cap,
                              const char **source);

#ifdef __cplusplus
}
#endif

#endif
