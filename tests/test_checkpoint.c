// Checkpoint files (models/checkpoint.c): a save/load round trip restores every buffer bit for
// bit; conv weights are OIHW in the file; diffusers' legacy attention names load; and files
// that do not fit the model (missing, extra, wrong-shaped, duplicated tensors, another format)
// are refused with one message while the store keeps its contents.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "models/checkpoint.h"
#include "models/model.h"
#include "runtime/safetensors.h"

static void tiny_config(ddx_config *cfg) {
    ddx_config_defaults(cfg);
    cfg->model.in_channels = 1, cfg->model.out_channels = 1, cfg->model.image_size = 8, cfg->data.image_size = 8;
    cfg->model.ch = 8, cfg->model.groups = 4, cfg->model.num_res_blocks = 1;
    cfg->model.ch_mult = (ddx_int_list){2, {1, 2}};
    cfg->model.attn_resolutions = (ddx_int_list){1, {4}};
}

static void fill_buf(ddx_param_store *ps, ddx_param_buf b, float base) {
    for (size_t i = 0; i < ps->numel; i++) ps->buf[b][i] = base + (float)(i % 977) * 1e-3f;
    for (size_t k = 0; k < ps->n_params; k++) {   // padding stays zero, as the store keeps it
        const ddx_param *p = ps->params[k];
        size_t end = p->offset + (size_t)ddx_numel(&p->value);
        size_t next = k + 1 < ps->n_params ? ps->params[k + 1]->offset : ps->numel;
        for (size_t i = end; i < next; i++) ps->buf[b][i] = 0.0f;
    }
}

// Writes `src`'s tensors to `dst` without tensor `drop` (may be NULL), plus a copy of tensor
// `copy_from` named `copy_to` (when both are given).
static void rewrite(const char *src, const char *dst, const char *drop, const char *copy_from, const char *copy_to) {
    ddx_st_file f;
    if (ddx_st_read(src, &f) != DDX_OK) return;
    ddx_st_writer w;
    ddx_st_writer_init(&w);
    for (size_t i = 0; i < f.n_tensors; i++) {
        const ddx_st_tensor *t = &f.tensors[i];
        if (!drop || strcmp(t->name, drop)) ddx_st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data);
        if (copy_from && !strcmp(t->name, copy_from)) ddx_st_writer_add(&w, copy_to, t->dtype, t->ndim, t->shape, t->data);
    }
    CHECK(ddx_st_write(&w, dst) == DDX_OK, "rewrite %s: %s", dst, ddx_last_error());
    ddx_st_writer_free(&w);
    ddx_st_close(&f);
}

int main(void) {
    char dir[] = "/tmp/ddx_ckpt_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/b.safetensors", dir);

    ddx_config cfg;
    tiny_config(&cfg);
    ddx_param_store ps, qs;
    ddx_model *m = NULL, *m2 = NULL;
    ddx_param_store_init(&ps, DDX_CPU);
    ddx_param_store_init(&qs, DDX_CPU);
    CHECK(ddx_model_create(&cfg, &ps, &m) == DDX_OK && ddx_param_store_finalize(&ps) == DDX_OK, "model: %s", ddx_last_error());
    CHECK(ddx_model_create(&cfg, &qs, &m2) == DDX_OK && ddx_param_store_finalize(&qs) == DDX_OK, "model 2: %s", ddx_last_error());
    if (n_fail) return ddx_test_finish("checkpoint");
    fill_buf(&ps, DDX_PBUF_VALUE, 0.5f);
    fill_buf(&ps, DDX_PBUF_EMA, -0.25f);
    fill_buf(&ps, DDX_PBUF_ADAM_M, 0.125f);
    fill_buf(&ps, DDX_PBUF_ADAM_V, 2.0f);
    ddx_ckpt_state st = {.step = 42, .data_batch = 43, .seed = 7, .loss_sum = 0.1, .loss_n = 3};
    CHECK(ddx_checkpoint_save(path, &ps, DDX_CKPT_WEIGHTS | DDX_CKPT_EMA | DDX_CKPT_ADAM, &cfg, &st) == DDX_OK, "save: %s",
          ddx_last_error());

    // Round trip: every buffer, the state and the config come back exactly.
    ddx_checkpoint ck;
    CHECK(ddx_checkpoint_open(path, &ck) == DDX_OK, "open: %s", ddx_last_error());
    CHECK(ck.is_ddx && ck.has_config && ck.content == (DDX_CKPT_WEIGHTS | DDX_CKPT_EMA | DDX_CKPT_ADAM), "header");
    CHECK(ck.state.step == 42 && ck.state.data_batch == 43 && ck.state.seed == 7 && ck.state.loss_sum == 0.1 && ck.state.loss_n == 3,
          "state");
    CHECK(ddx_config_diff(&ck.cfg, &cfg) == NULL, "stored config differs at %s", ddx_config_diff(&ck.cfg, &cfg));
    CHECK(ddx_checkpoint_load(&ck, &qs, DDX_CKPT_WEIGHTS | DDX_CKPT_EMA | DDX_CKPT_ADAM) == DDX_OK, "load: %s", ddx_last_error());
    const ddx_param_buf bufs[] = {DDX_PBUF_VALUE, DDX_PBUF_EMA, DDX_PBUF_ADAM_M, DDX_PBUF_ADAM_V};
    for (int b = 0; b < 4; b++)
        CHECK(!memcmp(ps.buf[bufs[b]], qs.buf[bufs[b]], ps.numel * sizeof(float)), "buffer %d differs after the round trip", b);

    // Conv weights are OIHW in the file: element (o, i, h, w) of the file is (o, h, w, i) in memory.
    const ddx_st_tensor *t = ddx_st_find(ck.file, "conv_in.weight");
    ddx_param *p = ddx_param_find(&ps, "conv_in.weight");
    CHECK(t && p && t->ndim == 4, "conv_in.weight in the file");
    if (t && p && t->ndim == 4) {
        const int64_t O = p->value.shape[0], H = p->value.shape[1], W = p->value.shape[2], I = p->value.shape[3];
        CHECK(t->shape[0] == O && t->shape[1] == I && t->shape[2] == H && t->shape[3] == W, "OIHW shape");
        const float *fd = t->data, *md = p->value.data;
        int bad_el = 0;
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < I; i++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t w = 0; w < W; w++)
                        bad_el += fd[((o * I + i) * H + h) * W + w] != md[((o * H + h) * W + w) * I + i];
        CHECK(bad_el == 0, "%d conv weight elements not OIHW", bad_el);
    }
    ddx_checkpoint_close(&ck);

    // A legacy name loads into the current parameter.
    const char *cur = "down_blocks.1.attentions.0.to_q.weight", *old = "down_blocks.1.attentions.0.query.weight";
    CHECK(ddx_param_find(&ps, cur) != NULL, "the tiny model has %s", cur);
    rewrite(path, bad, cur, cur, old);
    memset(qs.buf[DDX_PBUF_VALUE], 0, qs.numel * sizeof(float));
    CHECK(ddx_checkpoint_open(bad, &ck) == DDX_OK && ddx_checkpoint_load(&ck, &qs, DDX_CKPT_WEIGHTS) == DDX_OK,
          "legacy name: %s", ddx_last_error());
    CHECK(!memcmp(ps.buf[DDX_PBUF_VALUE], qs.buf[DDX_PBUF_VALUE], ps.numel * sizeof(float)), "legacy-named weights differ");
    ddx_checkpoint_close(&ck);

    // Files that do not fit: refused, naming the file and tensor; the store keeps its contents.
    struct { const char *drop, *copy_from, *copy_to, *want; } cases[] = {
        {cur, NULL, NULL, cur},                                         // a parameter missing
        {NULL, cur, "not_a_param.weight", "not_a_param.weight"},        // a stranger
        {NULL, cur, old, "twice"},                                      // old and new name both present
        {"conv_out.bias", "conv_in.bias", "conv_out.bias", "conv_out.bias"},   // wrong shape ([8] for [1])
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        rewrite(path, bad, cases[k].drop, cases[k].copy_from, cases[k].copy_to);
        fill_buf(&qs, DDX_PBUF_VALUE, 3.0f);
        float before = qs.buf[DDX_PBUF_VALUE][1];
        ddx_status s = ddx_checkpoint_open(bad, &ck);
        if (s == DDX_OK) s = ddx_checkpoint_load(&ck, &qs, DDX_CKPT_WEIGHTS);
        CHECK(s == DDX_E_INPUT, "case %zu: got status %d", k, (int)s);
        CHECK(s == DDX_OK || (strstr(ddx_last_error(), bad) && strstr(ddx_last_error(), cases[k].want)),
              "case %zu: message '%s' names neither the file nor '%s'", k, ddx_last_error(), cases[k].want);
        CHECK(qs.buf[DDX_PBUF_VALUE][1] == before, "case %zu: the store changed", k);
        ddx_checkpoint_close(&ck);
    }
    // Asking for parts the file lacks.
    CHECK(ddx_checkpoint_save(bad, &ps, DDX_CKPT_WEIGHTS, &cfg, &st) == DDX_OK, "weights-only save");
    CHECK(ddx_checkpoint_open(bad, &ck) == DDX_OK, "open weights-only");
    CHECK(ddx_checkpoint_load(&ck, &qs, DDX_CKPT_WEIGHTS | DDX_CKPT_EMA) == DDX_E_INPUT && strstr(ddx_last_error(), "EMA"),
          "missing EMA: %s", ddx_last_error());
    ddx_checkpoint_close(&ck);

    unlink(path);
    unlink(bad);
    rmdir(dir);
    ddx_model_free(m);
    ddx_model_free(m2);
    ddx_param_store_free(&ps);
    ddx_param_store_free(&qs);
    return ddx_test_finish("checkpoint");
}
