// pytorch-fid's .npz statistics (np.savez / np.savez_compressed: a zip of .npy members) and
// the lookup of the Inception weights file (see fid.h).
#include "fid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "outfile.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

typedef struct npz_member {
    bool found;
    uint16_t method;
    uint32_t crc;
    uint64_t csize, usize, local_off;
} npz_member;

// The members' central-directory entries; everything is bounds-checked against the file.
static ddx_status zip_find(const char *path, const uint8_t *f, uint64_t size, const char *const *names, npz_member *out,
                           int n_names) {
    if (size < 22) return ddx_errorf(DDX_E_INPUT, "%s: not a .npz file (too short for a zip archive)", path);
    uint64_t eocd = UINT64_MAX;
    uint64_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (uint64_t p = size - 22 + 1; p-- > lo;)
        if (rd32(f + p) == 0x06054b50u) {
            eocd = p;
            break;
        }
    if (eocd == UINT64_MAX)
        return ddx_errorf(DDX_E_INPUT, "%s: not a .npz file (no zip end record; truncated or another format)", path);
    uint64_t entries = rd16(f + eocd + 10), cd_size = rd32(f + eocd + 12), cd_off = rd32(f + eocd + 16);
    if ((entries == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) && eocd >= 20 &&
        rd32(f + eocd - 20) == 0x07064b50u) {
        uint64_t z = rd64(f + eocd - 20 + 8);
        if (z > size || size - z < 56 || rd32(f + z) != 0x06064b50u)
            return ddx_errorf(DDX_E_INPUT, "%s: broken zip64 end record", path);
        entries = rd64(f + z + 32);
        cd_size = rd64(f + z + 40);
        cd_off = rd64(f + z + 48);
    }
    if (cd_off > size || cd_size > size - cd_off)
        return ddx_errorf(DDX_E_INPUT, "%s: zip central directory lies outside the file (truncated?)", path);
    uint64_t p = cd_off, end = cd_off + cd_size;
    for (uint64_t e = 0; e < entries; e++) {
        if (end - p < 46 || rd32(f + p) != 0x02014b50u)
            return ddx_errorf(DDX_E_INPUT, "%s: broken zip central directory entry %llu", path, (unsigned long long)e);
        uint16_t method = rd16(f + p + 10), nlen = rd16(f + p + 28), xlen = rd16(f + p + 30), clen = rd16(f + p + 32);
        uint32_t crc = rd32(f + p + 16);
        uint64_t cs = rd32(f + p + 20), us = rd32(f + p + 24), lo_off = rd32(f + p + 42);
        if (end - p - 46 < (uint64_t)nlen + xlen + clen)
            return ddx_errorf(DDX_E_INPUT, "%s: broken zip central directory entry %llu", path, (unsigned long long)e);
        const uint8_t *name = f + p + 46, *x = name + nlen, *xend = x + xlen;
        // zip64 extra (id 1): the 8-byte values of the fields that read 0xffffffff, in order.
        while (xend - x >= 4) {
            uint16_t id = rd16(x), len = rd16(x + 2);
            if ((uint64_t)(xend - x - 4) < len) break;
            if (id == 1) {
                const uint8_t *v = x + 4, *vend = v + len;
                if (us == 0xffffffffu && vend - v >= 8) us = rd64(v), v += 8;
                if (cs == 0xffffffffu && vend - v >= 8) cs = rd64(v), v += 8;
                if (lo_off == 0xffffffffu && vend - v >= 8) lo_off = rd64(v), v += 8;
            }
            x += 4 + len;
        }
        for (int k = 0; k < n_names; k++)
            if (strlen(names[k]) == nlen && memcmp(names[k], name, nlen) == 0) {
                if (out[k].found) return ddx_errorf(DDX_E_INPUT, "%s: key '%.*s' appears twice", path, (int)nlen - 4, names[k]);
                out[k] = (npz_member){true, method, crc, cs, us, lo_off};
            }
        p += 46 + (uint64_t)nlen + xlen + clen;
    }
    return DDX_OK;
}

// Parses a .npy header; dtype '<f8' or '<f4'; up to 2 dimensions.
typedef struct npy_info {
    int itemsize;
    bool fortran;
    int ndim;
    int64_t shape[2];
    uint64_t data_off;
} npy_info;

static const char *skip_ws(const char *s, const char *e) {
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    return s;
}

static const char *find_key(const char *h, const char *e, const char *key) {
    size_t kl = strlen(key);
    for (const char *s = h; s + kl <= e; s++)
        if (memcmp(s, key, kl) == 0) {
            s = skip_ws(s + kl, e);
            if (s < e && *s == ':') return skip_ws(s + 1, e);
            return NULL;
        }
    return NULL;
}

static ddx_status npy_parse(const char *path, const char *key, const uint8_t *b, uint64_t n, npy_info *info) {
    if (n < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s' is not a .npy array", path, key);
    uint64_t hl, off;
    if (b[6] == 1) {
        hl = rd16(b + 8);
        off = 10;
    } else if (b[6] == 2 || b[6] == 3) {
        if (n < 12) return ddx_errorf(DDX_E_INPUT, "%s: key '%s': truncated .npy header", path, key);
        hl = rd32(b + 8);
        off = 12;
    } else {
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s': unknown .npy version %d", path, key, b[6]);
    }
    if (hl > 65536 || n - off < hl) return ddx_errorf(DDX_E_INPUT, "%s: key '%s': truncated .npy header", path, key);
    const char *h = (const char *)b + off, *e = h + hl;
    const char *v = find_key(h, e, "'descr'");
    if (!v) return ddx_errorf(DDX_E_INPUT, "%s: key '%s': .npy header without descr", path, key);
    if (e - v >= 5 && (memcmp(v, "'<f8'", 5) == 0 || memcmp(v, "'<f4'", 5) == 0)) {
        info->itemsize = v[3] == '8' ? 8 : 4;
    } else {
        const char *q = v;
        while (q < e && *q != ',' && *q != '}') q++;
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s' has dtype %.*s; expected float64 ('<f8') or float32 ('<f4')", path,
                          key, (int)(q - v), v);
    }
    v = find_key(h, e, "'fortran_order'");
    if (v && e - v >= 4 && memcmp(v, "True", 4) == 0) info->fortran = true;
    else if (v && e - v >= 5 && memcmp(v, "False", 5) == 0) info->fortran = false;
    else return ddx_errorf(DDX_E_INPUT, "%s: key '%s': .npy header without fortran_order", path, key);
    v = find_key(h, e, "'shape'");
    if (!v || *v != '(') return ddx_errorf(DDX_E_INPUT, "%s: key '%s': .npy header without shape", path, key);
    v++;
    info->ndim = 0;
    for (;;) {
        v = skip_ws(v, e);
        if (v < e && *v == ')') break;
        if (v >= e || *v < '0' || *v > '9' || info->ndim == 2)
            return ddx_errorf(DDX_E_INPUT, "%s: key '%s': shape is not a vector or a matrix", path, key);
        int64_t x = 0;
        while (v < e && *v >= '0' && *v <= '9') {
            if (x > (int64_t)1 << 40) return ddx_errorf(DDX_E_INPUT, "%s: key '%s': shape too large", path, key);
            x = x * 10 + (*v++ - '0');
        }
        info->shape[info->ndim++] = x;
        v = skip_ws(v, e);
        if (v < e && *v == ',') v++;
    }
    info->data_off = off + hl;
    return DDX_OK;
}

// Reads member k into a malloc'd buffer of exactly usize bytes, checking its CRC.
static ddx_status member_read(const char *path, const char *key, const uint8_t *f, uint64_t size, const npz_member *m,
                              uint64_t max_bytes, uint8_t **out) {
    *out = NULL;
    if (m->local_off > size || size - m->local_off < 30 || rd32(f + m->local_off) != 0x04034b50u)
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s': broken zip entry (truncated?)", path, key);
    uint64_t data = m->local_off + 30 + rd16(f + m->local_off + 26) + rd16(f + m->local_off + 28);
    if (data > size || size - data < m->csize)
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s': data runs past the end of the file (truncated?)", path, key);
    if (m->usize > max_bytes)
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s' holds %llu bytes, more than statistics of the allowed dimension need",
                          path, key, (unsigned long long)m->usize);
    if (m->method != 0 && m->method != 8)
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s': zip compression method %u (only stored and deflate are read)", path,
                          key, m->method);
    if (m->method == 0 && m->csize != m->usize)
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s': stored entry with inconsistent sizes", path, key);
    uint8_t *buf = malloc(m->usize ? m->usize : 1);
    if (!buf) return ddx_errorf(DDX_E_NOMEM, "%s: key '%s': out of memory for %llu bytes", path, key, (unsigned long long)m->usize);
    if (m->method == 0) {
        memcpy(buf, f + data, m->usize);
    } else {
        z_stream z;
        memset(&z, 0, sizeof(z));
        if (inflateInit2(&z, -15) != Z_OK) {
            free(buf);
            return ddx_errorf(DDX_E_NOMEM, "%s: zlib init failed", path);
        }
        // Fed and drained in pieces below 4 GiB (z_stream counts are 32-bit).
        uint64_t in_left = m->csize, out_left = m->usize;
        const uint8_t *in = f + data;
        uint8_t *o = buf;
        int zr = Z_OK;
        while (zr == Z_OK) {
            uInt ci = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left, co = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            z.next_in = (Bytef *)in;
            z.avail_in = ci;
            z.next_out = o;
            z.avail_out = co;
            zr = inflate(&z, Z_NO_FLUSH);
            in += ci - z.avail_in;
            in_left -= ci - z.avail_in;
            o += co - z.avail_out;
            out_left -= co - z.avail_out;
            if (zr == Z_OK && ci == z.avail_in && co == z.avail_out) zr = Z_BUF_ERROR;   // no progress
            if (zr == Z_OK && out_left == 0 && in_left == 0) zr = Z_BUF_ERROR;
        }
        inflateEnd(&z);
        if (zr != Z_STREAM_END || out_left != 0) {
            free(buf);
            return ddx_errorf(DDX_E_INPUT, "%s: key '%s': compressed data is corrupt or truncated", path, key);
        }
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (uint64_t p = 0; p < m->usize; p += 1u << 30)
        crc = crc32(crc, buf + p, (uInt)(m->usize - p > (1u << 30) ? (1u << 30) : m->usize - p));
    if ((uint32_t)crc != m->crc) {
        free(buf);
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s': CRC mismatch (the file is corrupt)", path, key);
    }
    *out = buf;
    return DDX_OK;
}

static double elem(const uint8_t *p, int itemsize) {
    if (itemsize == 8) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    float v;
    memcpy(&v, p, 4);
    return v;
}

ddx_status ddx_npz_read_stats(const char *path, int64_t max_dim, ddx_gauss *out) {
    memset(out, 0, sizeof(*out));
    if (max_dim <= 0 || max_dim > DDX_FID_MAX_DIM) max_dim = DDX_FID_MAX_DIM;
    const uint64_t max_sigma = 65536 + 12 + (uint64_t)max_dim * (uint64_t)max_dim * 8;
    int fd;
    int64_t fsize;
    DDX_TRY(ddx_input_open(path, "statistics file", &fd, &fsize));
    // Stats files hold mu and sigma; anything much bigger than the largest sigma is not one.
    if ((uint64_t)fsize > 2 * max_sigma + (1u << 20)) {
        close(fd);
        return ddx_errorf(DDX_E_INPUT, "%s: %lld bytes is larger than statistics of dimension up to %lld can be", path,
                          (long long)fsize, (long long)max_dim);
    }
    uint8_t *f = malloc(fsize ? (size_t)fsize : 1);
    if (!f) {
        close(fd);
        return ddx_errorf(DDX_E_NOMEM, "%s: out of memory", path);
    }
    int64_t got = 0;
    while (got < fsize) {
        ssize_t r = read(fd, f + got, (size_t)(fsize - got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            free(f);
            return ddx_errorf(r < 0 ? DDX_E_IO : DDX_E_INPUT, "%s: read failed (%s)", path, r < 0 ? strerror(e) : "file shrank");
        }
        got += r;
    }
    close(fd);

    static const char *const names[2] = {"mu.npy", "sigma.npy"};
    static const char *const keys[2] = {"mu", "sigma"};
    npz_member m[2] = {{0}, {0}};
    uint8_t *buf[2] = {NULL, NULL};
    npy_info info[2];
    ddx_status st = zip_find(path, f, (uint64_t)fsize, names, m, 2);
    for (int k = 0; k < 2 && st == DDX_OK; k++) {
        if (!m[k].found) {
            st = ddx_errorf(DDX_E_INPUT, "%s: no key '%s' (pytorch-fid statistics hold 'mu' and 'sigma')", path, keys[k]);
            break;
        }
        st = member_read(path, keys[k], f, (uint64_t)fsize, &m[k], max_sigma, &buf[k]);
        if (st == DDX_OK) st = npy_parse(path, keys[k], buf[k], m[k].usize, &info[k]);
    }
    free(f);
    if (st == DDX_OK) {
        const npy_info *a = &info[0], *b = &info[1];
        int64_t d = a->ndim == 1 ? a->shape[0] : -1;
        if (a->ndim != 1 || d < 1)
            st = ddx_errorf(DDX_E_INPUT, "%s: key 'mu' must be a vector [d]", path);
        else if (d > max_dim)
            st = ddx_errorf(DDX_E_INPUT, "%s: key 'mu' has d = %lld, above the limit %lld", path, (long long)d, (long long)max_dim);
        else if (b->ndim != 2 || b->shape[0] != d || b->shape[1] != d)
            st = ddx_errorf(DDX_E_INPUT, "%s: key 'sigma' must be [%lld, %lld] to match 'mu'", path, (long long)d, (long long)d);
        for (int k = 0; k < 2 && st == DDX_OK; k++) {
            uint64_t need = info[k].data_off + (uint64_t)(k ? d * d : d) * (uint64_t)info[k].itemsize;
            if (m[k].usize != need)
                st = ddx_errorf(DDX_E_INPUT, "%s: key '%s' holds %llu bytes but its header implies %llu", path, keys[k],
                                (unsigned long long)m[k].usize, (unsigned long long)need);
        }
        if (st == DDX_OK) st = ddx_gauss_alloc(out, d);
        if (st == DDX_OK) {
            const uint8_t *pm = buf[0] + a->data_off, *ps = buf[1] + b->data_off;
            for (int64_t i = 0; i < d; i++) out->mu[i] = elem(pm + i * a->itemsize, a->itemsize);
            for (int64_t i = 0; i < d; i++)
                for (int64_t j = 0; j < d; j++) {
                    int64_t src = b->fortran ? j * d + i : i * d + j;
                    out->sigma[i * d + j] = elem(ps + src * b->itemsize, b->itemsize);
                }
        }
    }
    free(buf[0]);
    free(buf[1]);
    return st;
}

// ---- writer ---------------------------------------------------------------------------------
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v), put16(p + 2, (uint16_t)(v >> 16)); }

// A v1.0 .npy header padded (spaces, then '\n') so the data starts on a 64-byte boundary, as numpy does.
static size_t npy_header(char *h, size_t cap, int64_t d, int ndim) {
    char dict[160];
    int dl = ndim == 1 ? snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (%lld,), }", (long long)d)
                       : snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (%lld, %lld), }",
                                  (long long)d, (long long)d);
    size_t total = 10 + (size_t)dl + 1;
    total = (total + 63) / 64 * 64;
    if (total > cap) return 0;
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    put16((uint8_t *)h + 8, (uint16_t)(total - 10));
    memcpy(h + 10, dict, (size_t)dl);
    memset(h + 10 + dl, ' ', total - 10 - (size_t)dl - 1);
    h[total - 1] = '\n';
    return total;
}

ddx_status ddx_npz_write_stats(const char *path, const char *what, const ddx_gauss *g) {
    if (!g || !g->mu || !g->sigma || g->d < 1 || g->d > DDX_FID_MAX_DIM)
        return ddx_errorf(DDX_E_INPUT, "%s: %s: no statistics to write", what, path);
    const int64_t d = g->d;
    char hdr[2][256];
    size_t hl[2] = {npy_header(hdr[0], sizeof hdr[0], d, 1), npy_header(hdr[1], sizeof hdr[1], d, 2)};
    const double *data[2] = {g->mu, g->sigma};
    const uint64_t dbytes[2] = {(uint64_t)d * 8, (uint64_t)d * (uint64_t)d * 8};
    static const char *const names[2] = {"mu.npy", "sigma.npy"};
    uint32_t crc[2], off[2];
    uint64_t pos = 0;
    for (int k = 0; k < 2; k++) {
        uLong c = crc32(0L, (const Bytef *)hdr[k], (uInt)hl[k]);
        c = crc32(c, (const Bytef *)data[k], (uInt)dbytes[k]);   // < 4 GiB: d <= DDX_FID_MAX_DIM
        crc[k] = (uint32_t)c;
    }
    ddx_atomic_file a;
    DDX_TRY(ddx_atomic_open(&a, path, what));
    for (int k = 0; k < 2; k++) {
        uint8_t lh[30] = {0};
        size_t nl = strlen(names[k]);
        uint32_t sz = (uint32_t)(hl[k] + dbytes[k]);
        put32(lh, 0x04034b50u);
        put16(lh + 4, 20);
        put16(lh + 12, 0x21);   // 1980-01-01: the archive carries no meaningful time
        put32(lh + 14, crc[k]);
        put32(lh + 18, sz);
        put32(lh + 22, sz);
        put16(lh + 26, (uint16_t)nl);
        off[k] = (uint32_t)pos;
        ddx_atomic_write(&a, lh, 30);
        ddx_atomic_write(&a, names[k], nl);
        ddx_atomic_write(&a, hdr[k], hl[k]);
        ddx_atomic_write(&a, data[k], dbytes[k]);
        pos += 30 + nl + sz;
    }
    uint64_t cd_off = pos;
    for (int k = 0; k < 2; k++) {
        uint8_t ch[46] = {0};
        size_t nl = strlen(names[k]);
        uint32_t sz = (uint32_t)(hl[k] + dbytes[k]);
        put32(ch, 0x02014b50u);
        put16(ch + 4, 20);
        put16(ch + 6, 20);
        put16(ch + 14, 0x21);
        put32(ch + 16, crc[k]);
        put32(ch + 20, sz);
        put32(ch + 24, sz);
        put16(ch + 28, (uint16_t)nl);
        put32(ch + 38, 0644u << 16);
        put32(ch + 42, off[k]);
        ddx_atomic_write(&a, ch, 46);
        ddx_atomic_write(&a, names[k], nl);
        pos += 46 + nl;
    }
    uint8_t eo[22] = {0};
    put32(eo, 0x06054b50u);
    put16(eo + 8, 2);
    put16(eo + 10, 2);
    put32(eo + 12, (uint32_t)(pos - cd_off));
    put32(eo + 16, (uint32_t)cd_off);
    ddx_atomic_write(&a, eo, 22);
    return ddx_atomic_commit(&a);
}

// ---- the Inception weights file -------------------------------------------------------------
ddx_status ddx_inception_path(const char *explicit_path, const char *explicit_what, char *out, size_t cap,
                              const char **source) {
    const char *src, *p;
    char def[4096];
    if (explicit_path && *explicit_path) {
        p = explicit_path;
        src = explicit_what ? explicit_what : "--inception";
    } else if ((p = getenv("DDX_INCEPTION")) && *p) {
        src = "DDX_INCEPTION";
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        int n;
        if (xdg && *xdg) n = snprintf(def, sizeof def, "%s/ddx/%s", xdg, DDX_INCEPTION_FILE);
        else if (home && *home) n = snprintf(def, sizeof def, "%s/.cache/ddx/%s", home, DDX_INCEPTION_FILE);
        else
            return ddx_errorf(DDX_E_INPUT, "Inception weights: neither --inception, DDX_INCEPTION, XDG_CACHE_HOME nor HOME "
                              "is set; run `%s --out FILE` and pass --inception FILE", DDX_INCEPTION_FETCH);
        if (n < 0 || (size_t)n >= sizeof def) return ddx_errorf(DDX_E_INPUT, "Inception weights: cache path too long");
        p = def;
        src = "default cache path";
    }
    if (source) *source = src;
    struct stat sb;
    if (stat(p, &sb) != 0) {
        if (strcmp(src, "default cache path") == 0)
            return ddx_errorf(DDX_E_INPUT, "Inception weights not found at %s (%s); run `%s` to fetch and convert them", p,
                              src, DDX_INCEPTION_FETCH);
        return ddx_errorf(DDX_E_INPUT, "Inception weights: %s (from %s): %s; run `%s --out %s` to fetch and convert them",
                          p, src, strerror(errno), DDX_INCEPTION_FETCH, p);
    }
    if (!S_ISREG(sb.st_mode))
        return ddx_errorf(DDX_E_INPUT, "Inception weights: %s (from %s) is not a regular file", p, src);
    if (strlen(p) >= cap) return ddx_errorf(DDX_E_INPUT, "Inception weights: path %s is too long", p);
    memcpy(out, p, strlen(p) + 1);
    return DDX_OK;
}
