/* pth.c: PyTorch .pth reader, zip and legacy formats (see pth.h). */
#include "io/pth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "core/fileio.h"

/* 0x1950a86a20f9469cfc6c, little-endian: torch.serialization.MAGIC_NUMBER */
static const uint8_t g_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
#define LEGACY_PROTOCOL_VERSION 1001

void mg_pth_close(mg_pth *p) {
    if (!p) return;
    mg_pyheap_free(&p->heap);
    for (size_t i = 0; i < p->n_blobs; i++) free(p->blobs[i]);
    free(p->blobs);
    free(p->file);
    free(p->path);
    memset(p, 0, sizeof *p);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* persistent_load: ('storage', torch.<T>Storage, key, location, numel[, view_metadata]) */
static mg_status persistent_load(void *ctx, mg_pyheap *h, const char *what, mg_pyobj *pid, mg_pyobj **out) {
    (void)ctx;
    if (pid->kind != MG_PY_TUPLE || pid->n < 5 || pid->items[0]->kind != MG_PY_STR ||
        strcmp(pid->items[0]->s, "storage"))
        return MG_FAIL(MG_ERR_FORMAT, "%s: unsupported persistent id (expected ('storage', type, key, location, size))",
                       what);
    const mg_pyobj *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->kind != MG_PY_GLOBAL || type->global != MG_PYG_STORAGE_TYPE)
        return MG_FAIL(MG_ERR_FORMAT, "%s: persistent id storage type is a %s, expected torch.<T>Storage", what,
                       mg_py_kind_name(type->kind));
    if (key->kind != MG_PY_STR || key->len == 0 || key->len > 64 || strchr(key->s, '/') || strstr(key->s, ".."))
        return MG_FAIL(MG_ERR_FORMAT, "%s: invalid storage key in persistent id", what);
    if (numel->kind != MG_PY_INT || numel->i < 0)
        return MG_FAIL(MG_ERR_FORMAT, "%s: storage '%s': invalid element count", what, key->s);
    mg_pyobj *s = mg_pyheap_new(h, MG_PY_STORAGE);
    if (!s) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", what);
    s->stype = type->stype;
    s->key = dup_str(key->s);
    if (!s->key) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", what);
    s->numel = numel->i;
    if (pid->n >= 6 && pid->items[5]->kind != MG_PY_NONE) {
        const mg_pyobj *vm = pid->items[5]; /* (view_key, offset, view_size), in elements */
        if (vm->kind != MG_PY_TUPLE || vm->n != 3 || vm->items[1]->kind != MG_PY_INT ||
            vm->items[2]->kind != MG_PY_INT || vm->items[1]->i < 0 || vm->items[2]->i < 0)
            return MG_FAIL(MG_ERR_FORMAT, "%s: storage '%s': malformed view metadata", what, key->s);
        s->view_offset = vm->items[1]->i;
        s->numel = vm->items[2]->i;
    }
    *out = s;
    return MG_OK;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static mg_dtype out_dtype(mg_torch_stype t) {
    switch (t) {
    case MG_TS_DOUBLE: return MG_DTYPE_F64;
    case MG_TS_LONG: return MG_DTYPE_I64;
    case MG_TS_INT: return MG_DTYPE_I32;
    case MG_TS_BYTE: return MG_DTYPE_U8;
    case MG_TS_BOOL: return MG_DTYPE_BOOL;
    default: return MG_DTYPE_F32;
    }
}

static void convert_elem(mg_torch_stype t, const uint8_t *src, uint8_t *dst) {
    if (t == MG_TS_HALF) {
        float f = half_to_float((uint16_t)(src[0] | (src[1] << 8)));
        memcpy(dst, &f, 4);
    } else if (t == MG_TS_BFLOAT16) {
        uint32_t bits = (uint32_t)(src[0] | (src[1] << 8)) << 16;
        memcpy(dst, &bits, 4);
    } else {
        memcpy(dst, src, mg_torch_stype_size(t));
    }
}

/* Copies a strided view out of its (loaded) storage into a contiguous buffer. */
static mg_status materialize(const char *path, mg_pyobj *t) {
    const mg_pyobj *s = t->storage;
    if (!s->sdata && s->snumel)
        return MG_FAIL(MG_ERR_FORMAT, "%s: storage '%s' was never loaded", path, s->key);
    const int64_t avail = s->snumel;
    int64_t count = 1, maxidx = t->offset;
    int empty = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->size[d] == 0) empty = 1;
        if (t->size[d] && count > ((int64_t)1 << 40) / t->size[d])
            return MG_FAIL(MG_ERR_FORMAT, "%s: storage '%s': tensor of more than 2^40 elements", path, s->key);
        count *= t->size[d];
    }
    if (!empty) {
        for (int d = 0; d < t->ndim; d++) {
            int64_t span = t->size[d] - 1;
            if (t->stride[d] && span > (INT64_MAX / 2 - maxidx) / t->stride[d]) {
                maxidx = INT64_MAX / 2;
                break;
            }
            maxidx += span * t->stride[d];
        }
        if (maxidx >= avail)
            return MG_FAIL(MG_ERR_FORMAT,
                           "%s: storage '%s': tensor view (offset %lld, last element %lld) runs past the storage "
                           "(%lld elements of %s)",
                           path, s->key, (long long)t->offset, (long long)maxidx, (long long)avail,
                           mg_torch_stype_name(s->stype));
        if (count > avail) /* stride 0 (expanded) views could blow up memory; state dicts never hold them */
            return MG_FAIL(MG_ERR_UNSUPPORTED,
                           "%s: storage '%s': tensor view of %lld elements over a storage of %lld (expanded or "
                           "overlapping strides are not supported)",
                           path, s->key, (long long)count, (long long)avail);
    } else {
        count = 0;
    }
    t->dtype = out_dtype(s->stype);
    t->count = count;
    size_t osz = mg_dtype_size(t->dtype), isz = mg_torch_stype_size(s->stype);
    t->data = malloc(count ? (size_t)count * osz : 1);
    if (!t->data) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory for a tensor of %lld elements", path, (long long)count);
    int64_t idx[MG_PY_MAX_DIMS] = {0};
    uint8_t *dst = t->data;
    for (int64_t k = 0; k < count; k++) {
        int64_t off = t->offset;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        convert_elem(s->stype, s->sdata + (size_t)off * isz, dst + (size_t)k * osz);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->size[d]) break;
            idx[d] = 0;
        }
    }
    return MG_OK;
}

static mg_status materialize_all(mg_pth *p) {
    for (size_t i = 0; i < p->heap.n; i++)
        if (p->heap.objs[i]->kind == MG_PY_TENSOR) MG_TRY(materialize(p->path, p->heap.objs[i]));
    return MG_OK;
}

/* ---------------------------------------------------------------- zip */

/* max_size: the largest plausible uncompressed size (deflate cannot expand more than ~1032:1),
 * so a zip bomb is refused before anything is allocated. */
static mg_status zip_read_entry(const char *path, zip_t *z, zip_int64_t idx, const char *name, zip_uint64_t max_size,
                                uint8_t **out, size_t *size) {
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(z, (zip_uint64_t)idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
        return MG_FAIL(MG_ERR_FORMAT, "%s: cannot stat archive entry '%s': %s", path, name, zip_strerror(z));
    if (zs.size > ((zip_uint64_t)1 << 40) || zs.size > max_size)
        return MG_FAIL(MG_ERR_FORMAT, "%s: archive entry '%s' claims %llu bytes", path, name,
                       (unsigned long long)zs.size);
    uint8_t *buf = malloc(zs.size ? (size_t)zs.size : 1);
    if (!buf) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory for entry '%s' (%llu bytes)", path, name,
                             (unsigned long long)zs.size);
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)idx, 0);
    if (!f) {
        free(buf);
        return MG_FAIL(MG_ERR_FORMAT, "%s: cannot open archive entry '%s': %s", path, name, zip_strerror(z));
    }
    zip_uint64_t got = 0;
    while (got < zs.size) {
        zip_int64_t r = zip_fread(f, buf + got, zs.size - got);
        if (r <= 0) {
            mg_status s = MG_FAIL(MG_ERR_FORMAT, "%s: archive entry '%s' truncated or corrupt after %llu of %llu bytes: %s",
                                  path, name, (unsigned long long)got, (unsigned long long)zs.size,
                                  r < 0 ? zip_error_strerror(zip_file_get_error(f)) : "unexpected end");
            zip_fclose(f);
            free(buf);
            return s;
        }
        got += (zip_uint64_t)r;
    }
    int rc = zip_fclose(f); /* reports a CRC mismatch */
    if (rc != 0) {
        free(buf);
        zip_error_t ze;
        zip_error_init_with_code(&ze, rc);
        mg_status s = MG_FAIL(MG_ERR_FORMAT, "%s: archive entry '%s' is corrupt: %s", path, name, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return s;
    }
    *out = buf;
    *size = (size_t)zs.size;
    return MG_OK;
}

static mg_status open_zip(mg_pth *p, size_t file_size) {
    int err = 0;
    const zip_uint64_t max_size = (zip_uint64_t)file_size * 1032 + (1u << 20);
    zip_t *z = zip_open(p->path, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, err);
        mg_status s = MG_FAIL(MG_ERR_FORMAT, "%s: not a readable zip archive (truncated or corrupt?): %s", p->path,
                              zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return s;
    }
    mg_status s = MG_OK;
    zip_int64_t n = zip_get_num_entries(z, 0), pkl = -1;
    char prefix[512] = "";
    for (zip_int64_t i = 0; i < n; i++) {
        const char *nm = zip_get_name(z, (zip_uint64_t)i, 0);
        if (!nm) continue;
        const char *slash = strchr(nm, '/');
        if (slash && !strcmp(slash, "/data.pkl") && (size_t)(slash - nm) < sizeof prefix - 1) {
            memcpy(prefix, nm, (size_t)(slash - nm));
            prefix[slash - nm] = 0;
            pkl = i;
            break;
        }
    }
    if (pkl < 0) s = MG_FAIL(MG_ERR_FORMAT, "%s: zip archive without a <name>/data.pkl entry: not a torch.save file", p->path);
    char what[1024];
    snprintf(what, sizeof what, "%s: %s/data.pkl", p->path, prefix);
    /* byteorder record (newer torch): refuse big-endian data */
    if (s == MG_OK) {
        char bo[600];
        snprintf(bo, sizeof bo, "%s/byteorder", prefix);
        zip_int64_t bi = zip_name_locate(z, bo, 0);
        if (bi >= 0) {
            uint8_t *b = NULL;
            size_t bn = 0;
            s = zip_read_entry(p->path, z, bi, bo, max_size, &b, &bn);
            if (s == MG_OK && !(bn == 6 && !memcmp(b, "little", 6)))
                s = MG_FAIL(MG_ERR_UNSUPPORTED, "%s: storages are not little-endian (byteorder '%.*s')", p->path,
                            (int)(bn < 16 ? bn : 16), (const char *)b);
            free(b);
        }
    }
    uint8_t *pk = NULL;
    size_t pkn = 0;
    if (s == MG_OK) s = zip_read_entry(p->path, z, pkl, what + strlen(p->path) + 2, max_size, &pk, &pkn);
    if (s == MG_OK) s = mg_unpickle(&p->heap, what, pk, pkn, persistent_load, p, &p->root, NULL);
    free(pk);
    /* load every distinct storage key once */
    for (size_t i = 0; s == MG_OK && i < p->heap.n; i++) {
        mg_pyobj *st = p->heap.objs[i];
        if (st->kind != MG_PY_STORAGE || st->sdata) continue;
        char ename[700];
        snprintf(ename, sizeof ename, "%s/data/%s", prefix, st->key);
        zip_int64_t ei = zip_name_locate(z, ename, 0);
        if (ei < 0) {
            s = MG_FAIL(MG_ERR_FORMAT, "%s: storage '%s' is missing from the archive (no entry '%s')", p->path, st->key,
                        ename);
            break;
        }
        uint8_t *b = NULL;
        size_t bn = 0;
        s = zip_read_entry(p->path, z, ei, ename, max_size, &b, &bn);
        if (s != MG_OK) break;
        uint8_t **nb = realloc(p->blobs, (p->n_blobs + 1) * sizeof *nb);
        if (!nb) {
            free(b);
            s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", p->path);
            break;
        }
        p->blobs = nb;
        p->blobs[p->n_blobs++] = b;
        for (size_t j = i; j < p->heap.n; j++) { /* all references to this key */
            mg_pyobj *o = p->heap.objs[j];
            if (o->kind != MG_PY_STORAGE || strcmp(o->key, st->key)) continue;
            size_t es = mg_torch_stype_size(o->stype);
            if (o->stype != st->stype || bn / es < (size_t)o->numel) {
                s = MG_FAIL(MG_ERR_FORMAT, "%s: storage '%s' has %zu bytes, %s of %lld elements needs %lld", p->path,
                            o->key, bn, mg_torch_stype_name(o->stype), (long long)o->numel,
                            (long long)o->numel * (long long)es);
                break;
            }
            o->sdata = b;
            o->snumel = o->numel;
        }
    }
    zip_close(z);
    return s;
}

/* ---------------------------------------------------------------- legacy */

static mg_status open_legacy(mg_pth *p, const uint8_t *buf, size_t size) {
    char what[1024];
    size_t pos = 0, used = 0;
    mg_pyobj *o = NULL;
    snprintf(what, sizeof what, "%s: legacy magic number", p->path);
    MG_TRY(mg_unpickle(&p->heap, what, buf, size, NULL, NULL, &o, &used));
    if (o->kind != MG_PY_BIGINT || o->len != sizeof g_magic || memcmp(o->s, g_magic, sizeof g_magic))
        return MG_FAIL(MG_ERR_FORMAT, "%s: not a PyTorch file (wrong magic number)", p->path);
    pos += used;
    snprintf(what, sizeof what, "%s: legacy protocol version", p->path);
    MG_TRY(mg_unpickle(&p->heap, what, buf + pos, size - pos, NULL, NULL, &o, &used));
    if (o->kind != MG_PY_INT || o->i != LEGACY_PROTOCOL_VERSION)
        return MG_FAIL(MG_ERR_UNSUPPORTED, "%s: legacy protocol version %lld, expected %d", p->path,
                       o->kind == MG_PY_INT ? (long long)o->i : -1LL, LEGACY_PROTOCOL_VERSION);
    pos += used;
    snprintf(what, sizeof what, "%s: legacy sys_info", p->path);
    MG_TRY(mg_unpickle(&p->heap, what, buf + pos, size - pos, NULL, NULL, &o, &used));
    const mg_pyobj *le = mg_py_dict_get(o, "little_endian");
    if (!le || le->kind != MG_PY_BOOL || !le->i)
        return MG_FAIL(MG_ERR_UNSUPPORTED, "%s: written on a big-endian machine (sys_info little_endian is not True)",
                       p->path);
    pos += used;
    snprintf(what, sizeof what, "%s: legacy main pickle", p->path);
    MG_TRY(mg_unpickle(&p->heap, what, buf + pos, size - pos, persistent_load, p, &p->root, &used));
    pos += used;
    snprintf(what, sizeof what, "%s: legacy storage key list", p->path);
    mg_pyobj *keys = NULL;
    MG_TRY(mg_unpickle(&p->heap, what, buf + pos, size - pos, NULL, NULL, &keys, &used));
    pos += used;
    if (keys->kind != MG_PY_LIST)
        return MG_FAIL(MG_ERR_FORMAT, "%s: storage key list is a %s", p->path, mg_py_kind_name(keys->kind));
    for (size_t k = 0; k < keys->n; k++) {
        const mg_pyobj *key = keys->items[k];
        if (key->kind != MG_PY_STR) return MG_FAIL(MG_ERR_FORMAT, "%s: storage key %zu is not a string", p->path, k);
        if (size - pos < 8)
            return MG_FAIL(MG_ERR_FORMAT, "%s: file truncated at storage '%s' (byte %zu of %zu: no element count)",
                           p->path, key->s, pos, size);
        int64_t numel = 0;
        memcpy(&numel, buf + pos, 8);
        pos += 8;
        /* element size from the first storage object with this key */
        mg_pyobj *first = NULL;
        for (size_t j = 0; j < p->heap.n && !first; j++) {
            mg_pyobj *s = p->heap.objs[j];
            if (s->kind == MG_PY_STORAGE && !strcmp(s->key, key->s)) first = s;
        }
        size_t es = first ? mg_torch_stype_size(first->stype) : 1;
        if (numel < 0 || (uint64_t)numel > (size - pos) / es)
            return MG_FAIL(MG_ERR_FORMAT,
                           "%s: file truncated in storage '%s': %lld elements of %zu bytes declared, %zu bytes left",
                           p->path, key->s, (long long)numel, es, size - pos);
        const uint8_t *data = buf + pos;
        pos += (size_t)numel * es;
        for (size_t j = 0; j < p->heap.n; j++) {
            mg_pyobj *s = p->heap.objs[j];
            if (s->kind != MG_PY_STORAGE || strcmp(s->key, key->s)) continue;
            if (mg_torch_stype_size(s->stype) != es || s->view_offset > numel || s->numel > numel - s->view_offset)
                return MG_FAIL(MG_ERR_FORMAT, "%s: storage '%s': view [%lld, +%lld) outside its %lld elements", p->path,
                               key->s, (long long)s->view_offset, (long long)s->numel, (long long)numel);
            s->sdata = data + (size_t)s->view_offset * es;
            s->snumel = s->numel;
        }
    }
    for (size_t j = 0; j < p->heap.n; j++) {
        mg_pyobj *s = p->heap.objs[j];
        if (s->kind == MG_PY_STORAGE && !s->sdata && s->numel)
            return MG_FAIL(MG_ERR_FORMAT, "%s: storage '%s' is referenced but not in the file's storage list", p->path,
                           s->key);
    }
    return MG_OK;
}

mg_status mg_pth_open(mg_pth *p, const char *path) { return mg_pth_open_ex(p, path, 0); }

mg_status mg_pth_open_ex(mg_pth *p, const char *path, int allow_foreign) {
    memset(p, 0, sizeof *p);
    mg_pyheap_init(&p->heap);
    p->heap.allow_foreign = allow_foreign ? 1 : 0;
    p->path = dup_str(path);
    if (!p->path) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
    void *buf = NULL;
    size_t size = 0;
    mg_status s = mg_file_read_all(path, &buf, &size);
    if (s != MG_OK) {
        mg_pth_close(p);
        return s;
    }
    const uint8_t *u = buf;
    if (size >= 4 && !memcmp(u, "PK\x03\x04", 4)) {
        free(buf);
        s = open_zip(p, size);
    } else if (size >= 2 && u[0] == 0x80) {
        p->legacy = 1;
        p->file = buf;
        s = open_legacy(p, u, size);
    } else {
        free(buf);
        s = size == 0 ? MG_FAIL(MG_ERR_FORMAT, "%s: empty file", path)
                      : MG_FAIL(MG_ERR_FORMAT, "%s: not a PyTorch checkpoint (neither a zip archive nor a legacy "
                                               "torch.save pickle)", path);
    }
    if (s == MG_OK) s = materialize_all(p);
    if (s != MG_OK) {
        char *msg = dup_str(mg_error_message());
        mg_pth_close(p);
        if (msg) mg_error_set(s, __FILE__, __LINE__, "%s", msg);
        free(msg);
    }
    return s;
}
