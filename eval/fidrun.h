// The FID pipeline shared by ddx-eval, ddx-compare --fid and ddx-train's eval.fid_every:
// uint8 images (as saved PNGs hold them) -> /255 -> the FID Inception (models/inception.h) ->
// pool3 features (and logits when the weights have the fc) -> streaming fp64 statistics
// (eval/fid.h) -> FID against a reference, KID when both sides kept features, IS when there are
// logits.
#ifndef DDX_EVAL_FIDRUN_H
#define DDX_EVAL_FIDRUN_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stdint.h>

#include "eval/fid.h"
#include "models/inception.h"

// KID needs the features themselves, not just their moments: each set keeps its first
// DDX_KID_KEEP rows (80 MB), and KID's 100 subsets of 1000 are drawn from those.
#define DDX_KID_KEEP 10000
// FID below this many samples is biased far beyond the differences it is used to rank
// (pytorch-fid warns likewise when n < 2048, the feature dimension).
#define DDX_FID_MIN_SAMPLES 2048

typedef struct ddx_featset {
    ddx_fstats *st;
    bool want_logits;
    float *logits;           // [n_logits, 1008] when want_logits
    int64_t n_logits, cap_logits;
    // torch-fidelity's IS takes the fc output without its bias ("logits_unbiased"): set from
    // the weights' fc.bias by ddx_featset_unbias, subtracted as logits are added.
    float *bias;
} ddx_featset;

// Reads fc.bias [1008] of the weights file into f (IS as torch-fidelity computes it).
ddx_status ddx_featset_unbias(ddx_featset *f, const char *weights);

ddx_status ddx_featset_init(ddx_featset *f, int64_t keep_max, bool want_logits);
// pool3: [n, 2048]; logits: [n, 1008] or NULL (required when want_logits).
ddx_status ddx_featset_add(ddx_featset *f, const float *pool3, const float *logits, int64_t n);
void ddx_featset_free(ddx_featset *f);

// Features of n uint8 images [n, h, w, c] (c 1 or 3): value/255 into the network in chunks
// of its batch. pool3: [n, 2048]; logits: [n, 1008] or NULL.
ddx_status ddx_features_u8(ddx_inception *net, const uint8_t *img, int64_t n, int h, int w, int c, float *pool3,
                           float *logits);

// The images of a folder: every .png/.jpg/.jpeg file directly in it or below, sorted by path.
typedef struct ddx_imgdir {
    char **paths;
    int64_t n, cap;
} ddx_imgdir;
// No image file: DDX_E_INPUT naming `what` and the folder.
ddx_status ddx_imgdir_list(const char *dir, const char *what, ddx_imgdir *out);
void ddx_imgdir_free(ddx_imgdir *d);
// Decodes every file once (and drops the pixels), so a broken file stops an evaluation before
// any work, naming the file.
ddx_status ddx_imgdir_check(const ddx_imgdir *d, int64_t max_pixels);
// Decodes one file as RGB8 (grey is repeated, alpha dropped: what PIL's convert('RGB') gives
// pytorch-fid). A file that does not decode, or one over max_pixels, is DDX_E_INPUT naming it.
ddx_status ddx_image_load_rgb(const char *path, int64_t max_pixels, uint8_t **pix, int *h, int *w);
// Runs every image of the folder through the network into f (consecutive images of equal size
// share a forward pass). progress (may be NULL) gets (done, total, label).
ddx_status ddx_features_dir(ddx_inception *net, const ddx_imgdir *d, int64_t max_pixels, ddx_featset *f,
                            void (*progress)(int64_t done, int64_t total, const char *label), const char *label);

// The reference side of a comparison: the statistics, and the kept features when known.
typedef struct ddx_ref {
    ddx_gauss g;
    float *feats;       // [n_feats, 2048] or NULL (KID is then not computed)
    int64_t n_feats;
    int64_t n;          // images behind the statistics (0 when a foreign .npz does not say)
    char desc[512];
} ddx_ref;
// The features file `ddx-eval stats` writes next to OUT.npz for KID: OUT.npz.features.safetensors.
#define DDX_REF_FEATURES_SUFFIX ".features.safetensors"
// ref: a pytorch-fid .npz (with its features file when there is one) or an image folder
// (needs net). what: the flag for messages.
ddx_status ddx_ref_load(const char *ref, const char *what, ddx_inception *net, int64_t max_pixels, ddx_ref *out,
                        void (*progress)(int64_t done, int64_t total, const char *label));
void ddx_ref_free(ddx_ref *r);
// Writes OUT.npz (mu, sigma) and OUT.npz.features.safetensors (the kept features, for KID).
ddx_status ddx_ref_write(const char *out, const char *what, const ddx_featset *f, const char *source_desc);

typedef struct ddx_fid_result {
    int64_t n;
    double fid;
    bool have_kid;
    double kid, kid_std;
    int64_t kid_subset;      // the subset size KID used (1000, or the smaller set's size)
    bool have_is;
    double is, is_std;
} ddx_fid_result;

// FID of f against ref (dimensions must agree: a .npz of another shape is DDX_E_INPUT naming
// it); KID when both keep at least 1000 features (subsets of min(1000, kept) otherwise noted);
// IS when f has logits and at least 10 rows.
ddx_status ddx_fid_finish(const ddx_featset *f, const ddx_ref *ref, ddx_fid_result *r);

#ifdef __cplusplus
}
#endif

#endif
