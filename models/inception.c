// pytorch-fid's FIDInceptionV3 on the runtime's ops (models/inception.h).
//
// Every torchvision BasicConv2d (conv without bias, BatchNorm eps 1e-3, ReLU) becomes one conv2d
// with the BatchNorm folded into its weights and bias at load (in double), then a relu. The
// blocks follow pytorch_fid/inception.py: FIDInceptionA (Mixed_5b-d: the pool branch is a 3x3
// average that leaves the padding out of the count), torchvision's InceptionB (Mixed_6a) and
// InceptionD (Mixed_7a), FIDInceptionC (Mixed_6b-e), FIDInceptionE_1 (Mixed_7b: average pool
// without padding in the count) and FIDInceptionE_2 (Mixed_7c: a 3x3 max pool), branches
// concatenated in torchvision's order.
//
// Memory: the activation arena would hold every intermediate of a whole forward (about 100 MB
// per 299x299 image); instead each block's output is copied into one of two ping-pong buffers
// and the arena is rewound to where the block started, so the arena holds one block's
// intermediates at a time (the stem's first convs, 149x149x32 and 147x147x64, are the largest).
#include "models/inception.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ops.h"
#include "runtime/safetensors.h"

#define INC_BN_EPS 1e-3
#define INC_MAX_CONVS 96

typedef struct inc_conv {
    char name[48];          // the BasicConv2d's state-dict prefix, e.g. "Mixed_5b.branch1x1"
    int ci, co, kh, kw;
    ddx_conv2d_params p;
    ddx_tensor w, b;        // folded: w [co, kh, kw, ci] (OHWI), b [co]; net's compute dtype
} inc_conv;

struct ddx_inception {
    ddx_device dev;
    ddx_inception_precision prec;
    ddx_dtype dt;           // activations and conv weights: f32, or bf16 for DDX_INCEPTION_BF16
    int batch;
    ddx_ctx ctx;
    bool ctx_ok;
    inc_conv conv[INC_MAX_CONVS];
    int n_conv;
    void *wmem;             // every folded conv weight and bias, on dev
    bool has_fc;
    ddx_tensor fc_w, fc_b;  // f32 [1008, 2048], [1008]
    void *fcmem;
    void *ping[2];          // block outputs, each ping_elems elements of dt per image
    int64_t ping_elems;
    ddx_tensor pt[2];
    int cur;
    float *stage;           // host: one chunk of images as 3-channel NHWC
    size_t stage_elems;
};

// ---- the architecture ---------------------------------------------------------------------
static void add_conv(ddx_inception *net, const char *name, int ci, int co, int kh, int kw, int stride, int ph, int pw) {
    inc_conv *c = &net->conv[net->n_conv++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->ci = ci, c->co = co, c->kh = kh, c->kw = kw;
    c->p = (ddx_conv2d_params){.stride = stride, .pad_top = ph, .pad_bottom = ph, .pad_left = pw, .pad_right = pw};
}

static void add_sub(ddx_inception *net, const char *block, const char *sub, int ci, int co, int kh, int kw, int stride,
                    int ph, int pw) {
    char name[48];
    snprintf(name, sizeof name, "%s.%s", block, sub);
    add_conv(net, name, ci, co, kh, kw, stride, ph, pw);
}

static void add_block_a(ddx_inception *net, const char *b, int in, int pool_features) {
    add_sub(net, b, "branch1x1", in, 64, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch5x5_1", in, 48, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch5x5_2", 48, 64, 5, 5, 1, 2, 2);
    add_sub(net, b, "branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    add_sub(net, b, "branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1);
    add_sub(net, b, "branch_pool", in, pool_features, 1, 1, 1, 0, 0);
}

static void add_block_c(ddx_inception *net, const char *b, int c7) {
    add_sub(net, b, "branch1x1", 768, 192, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch7x7_1", 768, c7, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch7x7_2", c7, c7, 1, 7, 1, 0, 3);
    add_sub(net, b, "branch7x7_3", c7, 192, 7, 1, 1, 3, 0);
    add_sub(net, b, "branch7x7dbl_1", 768, c7, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0);
    add_sub(net, b, "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3);
    add_sub(net, b, "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0);
    add_sub(net, b, "branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3);
    add_sub(net, b, "branch_pool", 768, 192, 1, 1, 1, 0, 0);
}

static void add_block_e(ddx_inception *net, const char *b, int in) {
    add_sub(net, b, "branch1x1", in, 320, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch3x3_1", in, 384, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch3x3_2a", 384, 384, 1, 3, 1, 0, 1);
    add_sub(net, b, "branch3x3_2b", 384, 384, 3, 1, 1, 1, 0);
    add_sub(net, b, "branch3x3dbl_1", in, 448, 1, 1, 1, 0, 0);
    add_sub(net, b, "branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1);
    add_sub(net, b, "branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1);
    add_sub(net, b, "branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0);
    add_sub(net, b, "branch_pool", in, 192, 1, 1, 1, 0, 0);
}

static void build_arch(ddx_inception *net) {
    add_conv(net, "Conv2d_1a_3x3", 3, 32, 3, 3, 2, 0, 0);
    add_conv(net, "Conv2d_2a_3x3", 32, 32, 3, 3, 1, 0, 0);
    add_conv(net, "Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1);
    add_conv(net, "Conv2d_3b_1x1", 64, 80, 1, 1, 1, 0, 0);
    add_conv(net, "Conv2d_4a_3x3", 80, 192, 3, 3, 1, 0, 0);
    add_block_a(net, "Mixed_5b", 192, 32);
    add_block_a(net, "Mixed_5c", 256, 64);
    add_block_a(net, "Mixed_5d", 288, 64);
    // InceptionB
    add_sub(net, "Mixed_6a", "branch3x3", 288, 384, 3, 3, 2, 0, 0);
    add_sub(net, "Mixed_6a", "branch3x3dbl_1", 288, 64, 1, 1, 1, 0, 0);
    add_sub(net, "Mixed_6a", "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    add_sub(net, "Mixed_6a", "branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0);
    add_block_c(net, "Mixed_6b", 128);
    add_block_c(net, "Mixed_6c", 160);
    add_block_c(net, "Mixed_6d", 160);
    add_block_c(net, "Mixed_6e", 192);
    // InceptionD
    add_sub(net, "Mixed_7a", "branch3x3_1", 768, 192, 1, 1, 1, 0, 0);
    add_sub(net, "Mixed_7a", "branch3x3_2", 192, 320, 3, 3, 2, 0, 0);
    add_sub(net, "Mixed_7a", "branch7x7x3_1", 768, 192, 1, 1, 1, 0, 0);
    add_sub(net, "Mixed_7a", "branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
    add_sub(net, "Mixed_7a", "branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
    add_sub(net, "Mixed_7a", "branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0);
    add_block_e(net, "Mixed_7b", 1280);
    add_block_e(net, "Mixed_7c", 2048);
}

// ---- loading ------------------------------------------------------------------------------
// The f32 tensor `name` of shape [d0..] from the file, copied into out (the file's data may be
// unaligned). Missing, another dtype or another shape: one line naming the tensor and file.
static ddx_status read_f32(const ddx_st_file *f, const char *path, const char *name, int ndim, const int64_t *shape,
                           float *out) {
    const ddx_st_tensor *t = ddx_st_find(f, name);
    char want[96] = "[", got[96] = "[";
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        n *= shape[d];
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)shape[d]);
    }
    strcat(want, "]");
    if (!t)
        return ddx_errorf(DDX_E_INPUT,
                          "%s: tensor '%s' (F32 %s) is missing: not FID Inception weights in pytorch-fid's names "
                          "(tools/fetch_inception.py makes them)",
                          path, name, want);
    bool same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    for (int d = 0; d < t->ndim && d < 8; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    strcat(got, "]");
    if (t->dtype != DDX_ST_F32 || !same)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor '%s' is %s %s, expected F32 %s", path, name,
                          ddx_st_dtype_name(t->dtype), got, want);
    memcpy(out, t->data, (size_t)n * sizeof(float));
    return DDX_OK;
}

// Folds one BasicConv2d: w' = w * g / sqrt(v + eps), b' = beta - mean * g / sqrt(v + eps), w'
// transposed from OIHW to OHWI. w_out and b_out are host f32.
static ddx_status fold_conv(const ddx_st_file *f, const char *path, const inc_conv *c, float *w_out, float *b_out) {
    const int64_t K = (int64_t)c->ci * c->kh * c->kw, co = c->co;
    float *w = malloc(sizeof(float) * (size_t)(co * K)), *bn = malloc(sizeof(float) * (size_t)(4 * co));
    if (!w || !bn) {
        free(w), free(bn);
        return ddx_errorf(DDX_E_NOMEM, "%s: out of host memory folding '%s'", path, c->name);
    }
    char name[96];
    ddx_status st = DDX_OK;
    snprintf(name, sizeof name, "%s.conv.weight", c->name);
    st = read_f32(f, path, name, 4, (int64_t[]){co, c->ci, c->kh, c->kw}, w);
    static const char *const bn_part[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int k = 0; k < 4 && st == DDX_OK; k++) {
        snprintf(name, sizeof name, "%s.bn.%s", c->name, bn_part[k]);
        st = read_f32(f, path, name, 1, (int64_t[]){co}, bn + k * co);
    }
    for (int64_t o = 0; o < co && st == DDX_OK; o++) {
        const double var = bn[3 * co + o];
        if (!(var >= 0.0) || !isfinite(var)) {
            st = ddx_errorf(DDX_E_INPUT, "%s: tensor '%s.bn.running_var' has a negative or non-finite entry (%g)",
                            path, c->name, var);
            break;
        }
        const double s = bn[o] / sqrt(var + INC_BN_EPS);
        b_out[o] = (float)(bn[co + o] - bn[2 * co + o] * s);
        for (int ci = 0; ci < c->ci; ci++)
            for (int ky = 0; ky < c->kh; ky++)
                for (int kx = 0; kx < c->kw; kx++)
                    w_out[((o * c->kh + ky) * c->kw + kx) * c->ci + ci] =
                        (float)(w[((o * c->ci + ci) * c->kh + ky) * c->kw + kx] * s);
    }
    free(w), free(bn);
    return st;
}

// Host f32 -> the device buffer in dtype dt (bf16 rounded to nearest even).
static ddx_status upload(ddx_inception *net, void *dst, const float *src, int64_t n, float *tmp16) {
    if (net->dt == DDX_F32) return ddx_memcpy(dst, net->dev, src, DDX_CPU, (size_t)n * sizeof(float));
    uint16_t *h = (uint16_t *)tmp16;
    for (int64_t i = 0; i < n; i++) h[i] = ddx_f32_to_bf16(src[i]);
    return ddx_memcpy(dst, net->dev, h, DDX_CPU, (size_t)n * sizeof(uint16_t));
}

static size_t dt_size(ddx_dtype dt) { return dt == DDX_BF16 ? 2 : 4; }

static ddx_status load_weights(ddx_inception *net, const ddx_st_file *f, const char *path) {
    const size_t es = dt_size(net->dt);
    // Each tensor starts 256-byte aligned in the one buffer (vector loads, TMA-free cp.async).
    size_t total = 0, max_w = 0;
    for (int i = 0; i < net->n_conv; i++) {
        const inc_conv *c = &net->conv[i];
        const size_t nw = (size_t)c->co * c->ci * c->kh * c->kw;
        total += ((nw * es + 255) & ~(size_t)255) + ((c->co * es + 255) & ~(size_t)255);
        if (nw > max_w) max_w = nw;
    }
    DDX_TRY(ddx_dev_alloc(net->dev, total, &net->wmem));
    float *w = malloc(sizeof(float) * max_w), *b = malloc(sizeof(float) * 2048), *tmp = malloc(sizeof(float) * max_w);
    ddx_status st = (w && b && tmp) ? DDX_OK : ddx_errorf(DDX_E_NOMEM, "%s: out of host memory", path);
    char *p = net->wmem;
    for (int i = 0; i < net->n_conv && st == DDX_OK; i++) {
        inc_conv *c = &net->conv[i];
        const int64_t nw = (int64_t)c->co * c->ci * c->kh * c->kw;
        st = fold_conv(f, path, c, w, b);
        if (st != DDX_OK) break;
        c->w = ddx_tensor_wrap(p, net->dt, net->dev, 4, (int64_t[]){c->co, c->kh, c->kw, c->ci});
        st = upload(net, p, w, nw, tmp);
        p += ((size_t)nw * es + 255) & ~(size_t)255;
        if (st != DDX_OK) break;
        c->b = ddx_tensor_wrap(p, net->dt, net->dev, 1, (int64_t[]){c->co});
        st = upload(net, p, b, c->co, tmp);
        p += ((size_t)c->co * es + 255) & ~(size_t)255;
    }
    free(w), free(b), free(tmp);
    if (st != DDX_OK) return st;

    // The fc (logits for the Inception Score) only when both tensors are there; one without
    // the other is a broken file.
    const bool has_w = ddx_st_find(f, "fc.weight") != NULL, has_b = ddx_st_find(f, "fc.bias") != NULL;
    if (has_w != has_b)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor '%s' is missing (the file has '%s' without it)", path,
                          has_w ? "fc.bias" : "fc.weight", has_w ? "fc.weight" : "fc.bias");
    if (!has_w) return DDX_OK;
    const size_t nfw = (size_t)DDX_INCEPTION_LOGITS * DDX_INCEPTION_FEATURES;
    float *fc = malloc(sizeof(float) * (nfw + DDX_INCEPTION_LOGITS));
    if (!fc) return ddx_errorf(DDX_E_NOMEM, "%s: out of host memory", path);
    st = read_f32(f, path, "fc.weight", 2, (int64_t[]){DDX_INCEPTION_LOGITS, DDX_INCEPTION_FEATURES}, fc);
    if (st == DDX_OK) st = read_f32(f, path, "fc.bias", 1, (int64_t[]){DDX_INCEPTION_LOGITS}, fc + nfw);
    if (st == DDX_OK) st = ddx_dev_alloc(net->dev, sizeof(float) * (nfw + DDX_INCEPTION_LOGITS), &net->fcmem);
    if (st == DDX_OK)
        st = ddx_memcpy(net->fcmem, net->dev, fc, DDX_CPU, sizeof(float) * (nfw + DDX_INCEPTION_LOGITS));
    free(fc);
    if (st != DDX_OK) return st;
    net->fc_w = ddx_tensor_wrap(net->fcmem, DDX_F32, net->dev, 2,
                                (int64_t[]){DDX_INCEPTION_LOGITS, DDX_INCEPTION_FEATURES});
    net->fc_b = ddx_tensor_wrap((float *)net->fcmem + nfw, DDX_F32, net->dev, 1, (int64_t[]){DDX_INCEPTION_LOGITS});
    net->has_fc = true;
    return DDX_OK;
}

// The largest block output per image (elements): the stem's first part ends at 147x147x32.
#define INC_PING_ELEMS ((int64_t)147 * 147 * 32)

ddx_status ddx_inception_load(const char *path, ddx_device dev, ddx_inception_precision prec, int batch,
                              ddx_inception **out) {
    *out = NULL;
    if (prec != DDX_INCEPTION_FP32 && prec != DDX_INCEPTION_TF32 && prec != DDX_INCEPTION_BF16)
        return ddx_errorf(DDX_E_INPUT, "inception: unknown precision %d (fp32, tf32 or bf16)", (int)prec);
    if (prec != DDX_INCEPTION_FP32 && dev != DDX_CUDA)
        return ddx_errorf(DDX_E_INPUT, "inception: precision %s needs the GPU; the CPU computes in fp32",
                          prec == DDX_INCEPTION_TF32 ? "tf32" : "bf16");
    if (batch < 0 || batch > 4096)
        return ddx_errorf(DDX_E_INPUT, "inception: batch %d outside 0..4096 (0 = the default)", batch);
    ddx_inception *net = calloc(1, sizeof *net);
    if (!net) return ddx_errorf(DDX_E_NOMEM, "inception: out of host memory");
    net->dev = dev;
    net->prec = prec;
    net->dt = prec == DDX_INCEPTION_BF16 ? DDX_BF16 : DDX_F32;
    net->batch = batch ? batch : (dev == DDX_CUDA ? 64 : 8);
    build_arch(net);

    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    if (st == DDX_OK) {
        st = load_weights(net, &f, path);
        ddx_st_close(&f);
    }
    // The arena starts at about one stem's worth per image and chains more if a block needs it.
    if (st == DDX_OK) st = ddx_ctx_init(&net->ctx, dev, (size_t)net->batch * (24u << 20));
    if (st == DDX_OK) {
        net->ctx_ok = true;
        ddx_ctx_set_grad(&net->ctx, false);
        ddx_ctx_set_tf32(&net->ctx, prec == DDX_INCEPTION_TF32);
        net->ping_elems = INC_PING_ELEMS;
        for (int k = 0; k < 2 && st == DDX_OK; k++)
            st = ddx_dev_alloc(dev, (size_t)(net->ping_elems * net->batch) * dt_size(net->dt), &net->ping[k]);
    }
    if (st != DDX_OK) {
        ddx_inception_free(net);
        return st;
    }
    *out = net;
    return DDX_OK;
}

void ddx_inception_free(ddx_inception *net) {
    if (!net) return;
    if (net->ctx_ok) ddx_ctx_free(&net->ctx);
    for (int k = 0; k < 2; k++)
        if (net->ping[k]) ddx_dev_free(net->dev, net->ping[k]);
    if (net->wmem) ddx_dev_free(net->dev, net->wmem);
    if (net->fcmem) ddx_dev_free(net->dev, net->fcmem);
    free(net->stage);
    free(net);
}

bool ddx_inception_has_logits(const ddx_inception *net) { return net && net->has_fc; }
int ddx_inception_batch(const ddx_inception *net) { return net ? net->batch : 0; }

// ---- the forward ----------------------------------------------------------------------------
static const inc_conv *find_conv(const ddx_inception *net, const char *block, const char *sub) {
    char name[48];
    if (sub) snprintf(name, sizeof name, "%s.%s", block, sub);
    else snprintf(name, sizeof name, "%s", block);
    for (int i = 0; i < net->n_conv; i++)
        if (strcmp(net->conv[i].name, name) == 0) return &net->conv[i];
    return NULL;
}

// BasicConv2d: the folded conv, then relu.
static ddx_tensor *bconv(ddx_inception *net, ddx_tensor *x, const char *block, const char *sub) {
    ddx_ctx *c = &net->ctx;
    const inc_conv *cv = find_conv(net, block, sub);
    if (!cv) {
        ddx_ctx_fail(c, ddx_errorf(DDX_E_INTERNAL, "inception: no conv %s.%s", block, sub ? sub : ""));
        return NULL;
    }
    // The op API takes non-const tensors; the weights are never written.
    inc_conv *m = (inc_conv *)cv;
    return ddx_relu(c, ddx_conv2d(c, x, &m->w, &m->b, cv->p));
}

static ddx_tensor *cat4(ddx_ctx *c, ddx_tensor *a, ddx_tensor *b, ddx_tensor *d, ddx_tensor *e) {
    ddx_tensor *ab = ddx_concat(c, a, b);
    ddx_tensor *abd = ddx_concat(c, ab, d);
    return e ? ddx_concat(c, abd, e) : abd;
}

static ddx_tensor *pool(ddx_ctx *c, ddx_tensor *x, ddx_pool_mode mode, int k, int s, int pad, bool include_pad) {
    return ddx_pool2d(c, x,
                      (ddx_pool2d_params){.mode = mode, .kh = k, .kw = k, .stride = s, .pad_h = pad, .pad_w = pad,
                                          .count_include_pad = include_pad});
}

static ddx_tensor *block_a(ddx_inception *net, ddx_tensor *x, const char *b) {
    ddx_ctx *c = &net->ctx;
    ddx_tensor *b1 = bconv(net, x, b, "branch1x1");
    ddx_tensor *b5 = bconv(net, bconv(net, x, b, "branch5x5_1"), b, "branch5x5_2");
    ddx_tensor *b3 = bconv(net, bconv(net, bconv(net, x, b, "branch3x3dbl_1"), b, "branch3x3dbl_2"), b, "branch3x3dbl_3");
    ddx_tensor *bp = bconv(net, pool(c, x, DDX_POOL_AVG, 3, 1, 1, false), b, "branch_pool");
    return cat4(c, b1, b5, b3, bp);
}

static ddx_tensor *block_b(ddx_inception *net, ddx_tensor *x, const char *b) {
    ddx_ctx *c = &net->ctx;
    ddx_tensor *b3 = bconv(net, x, b, "branch3x3");
    ddx_tensor *bd = bconv(net, bconv(net, bconv(net, x, b, "branch3x3dbl_1"), b, "branch3x3dbl_2"), b, "branch3x3dbl_3");
    ddx_tensor *bp = pool(c, x, DDX_POOL_MAX, 3, 2, 0, false);
    return cat4(c, b3, bd, bp, NULL);
}

static ddx_tensor *block_c(ddx_inception *net, ddx_tensor *x, const char *b) {
    ddx_ctx *c = &net->ctx;
    ddx_tensor *b1 = bconv(net, x, b, "branch1x1");
    ddx_tensor *b7 = bconv(net, bconv(net, bconv(net, x, b, "branch7x7_1"), b, "branch7x7_2"), b, "branch7x7_3");
    ddx_tensor *bd = bconv(net, x, b, "branch7x7dbl_1");
    bd = bconv(net, bconv(net, bd, b, "branch7x7dbl_2"), b, "branch7x7dbl_3");
    bd = bconv(net, bconv(net, bd, b, "branch7x7dbl_4"), b, "branch7x7dbl_5");
    ddx_tensor *bp = bconv(net, pool(c, x, DDX_POOL_AVG, 3, 1, 1, false), b, "branch_pool");
    return cat4(c, b1, b7, bd, bp);
}

static ddx_tensor *block_d(ddx_inception *net, ddx_tensor *x, const char *b) {
    ddx_ctx *c = &net->ctx;
    ddx_tensor *b3 = bconv(net, bconv(net, x, b, "branch3x3_1"), b, "branch3x3_2");
    ddx_tensor *b7 = bconv(net, bconv(net, x, b, "branch7x7x3_1"), b, "branch7x7x3_2");
    b7 = bconv(net, bconv(net, b7, b, "branch7x7x3_3"), b, "branch7x7x3_4");
    ddx_tensor *bp = pool(c, x, DDX_POOL_MAX, 3, 2, 0, false);
    return cat4(c, b3, b7, bp, NULL);
}

// E_1 (Mixed_7b) pools by an average without the padding, E_2 (Mixed_7c) by a max.
static ddx_tensor *block_e(ddx_inception *net, ddx_tensor *x, const char *b, bool max_pool) {
    ddx_ctx *c = &net->ctx;
    ddx_tensor *b1 = bconv(net, x, b, "branch1x1");
    ddx_tensor *t = bconv(net, x, b, "branch3x3_1");
    ddx_tensor *b3 = ddx_concat(c, bconv(net, t, b, "branch3x3_2a"), bconv(net, t, b, "branch3x3_2b"));
    ddx_tensor *u = bconv(net, bconv(net, x, b, "branch3x3dbl_1"), b, "branch3x3dbl_2");
    ddx_tensor *bd = ddx_concat(c, bconv(net, u, b, "branch3x3dbl_3a"), bconv(net, u, b, "branch3x3dbl_3b"));
    ddx_tensor *pl = max_pool ? pool(c, x, DDX_POOL_MAX, 3, 1, 1, false) : pool(c, x, DDX_POOL_AVG, 3, 1, 1, false);
    return cat4(c, b1, b3, bd, bconv(net, pl, b, "branch_pool"));
}

// Copies a block's output into the next ping-pong buffer and rewinds the arena to the block's
// start, so the next block's intermediates reuse the memory.
static ddx_tensor *keep(ddx_inception *net, ddx_tensor *y, ddx_arena_mark mark) {
    ddx_ctx *c = &net->ctx;
    if (!y) return NULL;
    const int64_t n = ddx_numel(y);
    if (n > net->ping_elems * net->batch) {
        ddx_ctx_fail(c, ddx_errorf(DDX_E_INTERNAL, "inception: a block output of %lld elements outgrows its buffer",
                                   (long long)n));
        return NULL;
    }
    const int k = net->cur ^= 1;
    ddx_status st = ddx_memcpy(net->ping[k], net->dev, y->data, net->dev, ddx_nbytes(y));
    if (st == DDX_OK) st = ddx_arena_rewind(&c->act, mark);
    if (st != DDX_OK) {
        ddx_ctx_fail(c, st);
        return NULL;
    }
    net->pt[k] = ddx_tensor_wrap(net->ping[k], y->dtype, net->dev, y->ndim, y->shape);
    return &net->pt[k];
}

// x: [nb, 299, 299, 3] in [-1, 1] (the context's dtype) -> pool3 [nb, 2048] f32.
static ddx_tensor *forward(ddx_inception *net, ddx_tensor *x) {
    ddx_ctx *c = &net->ctx;
    ddx_arena_mark m = ddx_arena_mark_get(&c->act);
    x = bconv(net, x, "Conv2d_1a_3x3", NULL);
    x = keep(net, bconv(net, x, "Conv2d_2a_3x3", NULL), m);
    x = bconv(net, x, "Conv2d_2b_3x3", NULL);
    x = pool(c, x, DDX_POOL_MAX, 3, 2, 0, false);
    x = bconv(net, bconv(net, x, "Conv2d_3b_1x1", NULL), "Conv2d_4a_3x3", NULL);
    x = keep(net, pool(c, x, DDX_POOL_MAX, 3, 2, 0, false), m);
    static const char *const a_blocks[3] = {"Mixed_5b", "Mixed_5c", "Mixed_5d"};
    for (int i = 0; i < 3; i++) x = keep(net, block_a(net, x, a_blocks[i]), m);
    x = keep(net, block_b(net, x, "Mixed_6a"), m);
    static const char *const c_blocks[4] = {"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"};
    for (int i = 0; i < 4; i++) x = keep(net, block_c(net, x, c_blocks[i]), m);
    x = keep(net, block_d(net, x, "Mixed_7a"), m);
    x = keep(net, block_e(net, x, "Mixed_7b", false), m);
    x = block_e(net, x, "Mixed_7c", true);
    // bf16: the features are averaged in f32 (a bf16 mean would round the result to 8 bits).
    if (x && x->dtype != DDX_F32) x = ddx_cast(c, x, DDX_F32);
    x = ddx_global_avg_pool(c, x);
    return x ? ddx_reshape(c, x, 2, (int64_t[]){x->shape[0], DDX_INCEPTION_FEATURES}) : NULL;
}

ddx_status ddx_inception_features(ddx_inception *net, const float *images, int n, int h, int w, int c, float *pool3,
                                  float *logits) {
    if (!net || !images || !pool3) return ddx_errorf(DDX_E_INTERNAL, "inception: NULL network, images or output");
    if (n < 1 || h < 1 || w < 1 || (c != 1 && c != 3) || (int64_t)h * w > ((int64_t)1 << 26))
        return ddx_errorf(DDX_E_INPUT, "inception: images [%d, %d, %d, %d] must be [n >= 1, H, W, 1 or 3]", n, h, w, c);
    if (logits && !net->has_fc)
        return ddx_errorf(DDX_E_INPUT, "inception: logits asked for, but the weights have no fc.weight/fc.bias");
    ddx_ctx *cx = &net->ctx;
    const size_t img = (size_t)h * w * 3, need = img * (size_t)(n < net->batch ? n : net->batch);
    if (net->stage_elems < need) {
        float *s = realloc(net->stage, need * sizeof(float));
        if (!s) return ddx_errorf(DDX_E_NOMEM, "inception: out of host memory for %d images of %dx%d", net->batch, h, w);
        net->stage = s;
        net->stage_elems = need;
    }
    for (int i0 = 0; i0 < n; i0 += net->batch) {
        const int nb = n - i0 < net->batch ? n - i0 : net->batch;
        // Grayscale is repeated to 3 channels, as pytorch-fid's data path does for 'L' images.
        const float *src = images + (size_t)i0 * h * w * c;
        if (c == 3) memcpy(net->stage, src, img * nb * sizeof(float));
        else
            for (size_t p = 0; p < (size_t)nb * h * w; p++)
                net->stage[3 * p] = net->stage[3 * p + 1] = net->stage[3 * p + 2] = src[p];
        DDX_TRY(ddx_ctx_reset(cx));
        ddx_tensor *x = ddx_new(cx, DDX_F32, 4, (int64_t[]){nb, h, w, 3});
        if (!x) return ddx_ctx_status(cx) != DDX_OK ? ddx_ctx_status(cx) : DDX_E_NOMEM;
        DDX_TRY(ddx_memcpy(x->data, net->dev, net->stage, DDX_CPU, img * nb * sizeof(float)));
        // pytorch-fid: resize on the [0, 1] values first, then 2x - 1. A 299x299 input skips
        // the resize, which would return it unchanged.
        if (h != DDX_INCEPTION_SIZE || w != DDX_INCEPTION_SIZE)
            x = ddx_resize_bilinear(cx, x, DDX_INCEPTION_SIZE, DDX_INCEPTION_SIZE);
        x = ddx_scale(cx, x, 2.0f, -1.0f);
        if (net->dt != DDX_F32) x = ddx_cast(cx, x, net->dt);
        ddx_tensor *f = x ? forward(net, x) : NULL;
        ddx_tensor *lg = f && logits ? ddx_linear(cx, f, &net->fc_w, &net->fc_b) : NULL;
        DDX_TRY(ddx_ctx_status(cx));
        if (!f || (logits && !lg)) return ddx_errorf(DDX_E_INTERNAL, "inception: forward returned no tensor");
        DDX_TRY(ddx_memcpy(pool3 + (size_t)i0 * DDX_INCEPTION_FEATURES, DDX_CPU, f->data, net->dev,
                           (size_t)nb * DDX_INCEPTION_FEATURES * sizeof(float)));
        if (logits)
            DDX_TRY(ddx_memcpy(logits + (size_t)i0 * DDX_INCEPTION_LOGITS, DDX_CPU, lg->data, net->dev,
                               (size_t)nb * DDX_INCEPTION_LOGITS * sizeof(float)));
    }
    return DDX_OK;
}

// ---- formula weights (tests/reference/gen_inception.py) -------------------------------------
static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001B3ull;
    }
    return h;
}

// u = (splitmix64(h + (i + 1) * golden) >> 40) * 2^-24, then by kind (in double, rounded once):
// conv/fc weights (2u - 1) sqrt(6 / fan_in), BatchNorm scale and variance 0.5 + u, the rest
// 0.2u - 0.1.
static void formula_fill(const char *name, int kind, int64_t n, int64_t fan_in, float *out) {
    const uint64_t h = fnv1a64(name);
    const double a = sqrt(6.0 / (double)fan_in);
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = h + ((uint64_t)i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const double u = (double)(z >> 40) * 0x1p-24;
        out[i] = (float)(kind == 0 ? (2.0 * u - 1.0) * a : kind == 1 ? 0.5 + u : 0.2 * u - 0.1);
    }
}

ddx_status ddx_inception_write_test_weights(const char *path, bool with_fc) {
    ddx_inception *arch = calloc(1, sizeof *arch);
    if (!arch) return ddx_errorf(DDX_E_NOMEM, "%s: out of host memory", path);
    build_arch(arch);
    // Names and buffers live until the write: 5 tensors per conv plus the fc.
    const int nt = 5 * arch->n_conv + 2;
    char (*names)[64] = calloc((size_t)nt, sizeof *names);
    float **bufs = calloc((size_t)nt, sizeof *bufs);
    ddx_st_writer w;
    ddx_st_writer_init(&w);
    ddx_status st = names && bufs ? DDX_OK : ddx_errorf(DDX_E_NOMEM, "%s: out of host memory", path);
    int k = 0;
    static const char *const parts[5] = {"conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    static const int kinds[5] = {0, 1, 2, 2, 1};
    for (int i = 0; i < arch->n_conv && st == DDX_OK; i++) {
        const inc_conv *c = &arch->conv[i];
        for (int p = 0; p < 5 && st == DDX_OK; p++, k++) {
            const int64_t fan_in = (int64_t)c->ci * c->kh * c->kw;
            const int64_t n = p == 0 ? c->co * fan_in : c->co;
            snprintf(names[k], sizeof names[k], "%s.%s", c->name, parts[p]);
            bufs[k] = malloc(sizeof(float) * (size_t)n);
            if (!bufs[k]) {
                st = ddx_errorf(DDX_E_NOMEM, "%s: out of host memory", path);
                break;
            }
            formula_fill(names[k], kinds[p], n, fan_in, bufs[k]);
            if (p == 0) st = ddx_st_writer_add(&w, names[k], DDX_ST_F32, 4, (int64_t[]){c->co, c->ci, c->kh, c->kw}, bufs[k]);
            else st = ddx_st_writer_add(&w, names[k], DDX_ST_F32, 1, (int64_t[]){c->co}, bufs[k]);
        }
    }
    if (with_fc && st == DDX_OK) {
        const int64_t nw = (int64_t)DDX_INCEPTION_LOGITS * DDX_INCEPTION_FEATURES;
        snprintf(names[k], sizeof names[k], "fc.weight");
        snprintf(names[k + 1], sizeof names[k + 1], "fc.bias");
        bufs[k] = malloc(sizeof(float) * (size_t)nw);
        bufs[k + 1] = malloc(sizeof(float) * DDX_INCEPTION_LOGITS);
        if (!bufs[k] || !bufs[k + 1]) st = ddx_errorf(DDX_E_NOMEM, "%s: out of host memory", path);
        if (st == DDX_OK) {
            formula_fill(names[k], 0, nw, DDX_INCEPTION_FEATURES, bufs[k]);
            formula_fill(names[k + 1], 2, DDX_INCEPTION_LOGITS, 1, bufs[k + 1]);
            st = ddx_st_writer_add(&w, names[k], DDX_ST_F32, 2,
                                   (int64_t[]){DDX_INCEPTION_LOGITS, DDX_INCEPTION_FEATURES}, bufs[k]);
        }
        if (st == DDX_OK)
            st = ddx_st_writer_add(&w, names[k + 1], DDX_ST_F32, 1, (int64_t[]){DDX_INCEPTION_LOGITS}, bufs[k + 1]);
    }
    if (st == DDX_OK) st = ddx_st_write(&w, path);
    ddx_st_writer_free(&w);
    for (int i = 0; bufs && i < nt; i++) free(bufs[i]);
    free(bufs), free(names), free(arch);
    return st;
}
