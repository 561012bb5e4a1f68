/* unpickle.c: restricted, bounds-checked Python unpickler for PyTorch state dicts (see unpickle.h). */
#include "io/unpickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_stype_names[MG_TS_COUNT] = {"FloatStorage", "DoubleStorage", "HalfStorage",
                                                 "BFloat16Storage", "LongStorage", "IntStorage",
                                                 "ByteStorage", "BoolStorage"};
static const size_t g_stype_sizes[MG_TS_COUNT] = {4, 8, 2, 2, 8, 4, 1, 1};

const char *mg_torch_stype_name(mg_torch_stype t) { return (t >= 0 && t < MG_TS_COUNT) ? g_stype_names[t] : "?"; }
size_t mg_torch_stype_size(mg_torch_stype t) { return (t >= 0 && t < MG_TS_COUNT) ? g_stype_sizes[t] : 0; }

const char *mg_py_kind_name(mg_py_kind k) {
    static const char *names[] = {"None", "bool", "int", "int", "float", "str", "bytes", "tuple",
                                  "list", "dict", "global", "storage", "tensor", "foreign object"};
    return (k >= 0 && k <= MG_PY_FOREIGN) ? names[k] : "?";
}

void mg_pyheap_init(mg_pyheap *h) { memset(h, 0, sizeof *h); }

void mg_pyheap_free(mg_pyheap *h) {
    if (!h) return;
    for (size_t i = 0; i < h->n; i++) {
        mg_pyobj *o = h->objs[i];
        free(o->s);
        free(o->items);
        free(o->key);
        free(o->data);
        free(o);
    }
    free(h->objs);
    memset(h, 0, sizeof *h);
}

mg_pyobj *mg_pyheap_new(mg_pyheap *h, mg_py_kind kind) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 256;
        mg_pyobj **o = realloc(h->objs, cap * sizeof *o);
        if (!o) return NULL;
        h->objs = o;
        h->cap = cap;
    }
    mg_pyobj *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->kind = kind;
    h->objs[h->n++] = o;
    return o;
}

static int obj_push_item(mg_pyobj *c, mg_pyobj *v) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        mg_pyobj **it = realloc(c->items, cap * sizeof *it);
        if (!it) return 0;
        c->items = it;
        c->cap = cap;
    }
    c->items[c->n++] = v;
    return 1;
}

mg_pyobj *mg_py_dict_get(const mg_pyobj *d, const char *key) {
    if (!d || d->kind != MG_PY_DICT) return NULL;
    for (size_t i = d->n; i >= 2; i -= 2) {
        const mg_pyobj *k = d->items[i - 2];
        if (k->kind == MG_PY_STR && !strcmp(k->s, key)) return d->items[i - 1];
    }
    return NULL;
}

/* ------------------------------------------------------------------ machine */

typedef struct up {
    mg_pyheap *h;
    const char *what;
    const uint8_t *buf;
    size_t len, pos;
    size_t op_pos; /* offset of the current opcode */
    uint8_t op;
    mg_pyobj **stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    mg_pyobj **memo;
    size_t memo_cap; /* allocated entries */
    size_t memo_limit;
    size_t memo_next; /* for MEMOIZE */
    mg_persistent_load_fn pl;
    void *ctx;
} up;

#define UFAIL(u, code, ...) up_fail((u), (code), __VA_ARGS__)

static mg_status up_fail(up *u, mg_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static mg_status up_fail(up *u, mg_status code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mg_error_set(code, __FILE__, __LINE__, "%s: %s (pickle opcode 0x%02x at byte %zu)", u->what, msg, u->op,
                        u->op_pos);
}

static mg_status need(up *u, size_t n) {
    if (n > u->len - u->pos)
        return mg_error_set(MG_ERR_FORMAT, __FILE__, __LINE__,
                            "%s: pickle truncated: opcode 0x%02x at byte %zu needs %zu more bytes, %zu left", u->what,
                            u->op, u->op_pos, n, u->len - u->pos);
    return MG_OK;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static mg_status take_le(up *u, int n, uint64_t *v) {
    MG_TRY(need(u, (size_t)n));
    *v = rd_le(u->buf + u->pos, n);
    u->pos += (size_t)n;
    return MG_OK;
}

static mg_status push(up *u, mg_pyobj *o) {
    if (!o) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
    if (u->sn == u->scap) {
        size_t cap = u->scap ? 2 * u->scap : 64;
        mg_pyobj **s = realloc(u->stack, cap * sizeof *s);
        if (!s) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        u->stack = s;
        u->scap = cap;
    }
    u->stack[u->sn++] = o;
    return MG_OK;
}

static mg_status pop(up *u, mg_pyobj **o) {
    size_t floor = u->mn ? u->marks[u->mn - 1] : 0;
    if (u->sn <= floor) return UFAIL(u, MG_ERR_FORMAT, "stack underflow (malformed pickle)");
    *o = u->stack[--u->sn];
    return MG_OK;
}

static mg_status top(up *u, mg_pyobj **o) {
    size_t floor = u->mn ? u->marks[u->mn - 1] : 0;
    if (u->sn <= floor) return UFAIL(u, MG_ERR_FORMAT, "stack underflow (malformed pickle)");
    *o = u->stack[u->sn - 1];
    return MG_OK;
}

/* Pops the topmost mark; *start = stack index where the marked items begin. */
static mg_status pop_mark(up *u, size_t *start) {
    if (!u->mn) return UFAIL(u, MG_ERR_FORMAT, "no MARK on the stack (malformed pickle)");
    *start = u->marks[--u->mn];
    return MG_OK;
}

static mg_pyobj *new_obj(up *u, mg_py_kind k) { return mg_pyheap_new(u->h, k); }

static mg_status new_str(up *u, mg_py_kind kind, size_t n, mg_pyobj **out) {
    MG_TRY(need(u, n));
    mg_pyobj *o = new_obj(u, kind);
    if (!o) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
    o->s = malloc(n + 1);
    if (!o->s) return UFAIL(u, MG_ERR_NOMEM, "out of memory for a %zu-byte string", n);
    memcpy(o->s, u->buf + u->pos, n);
    o->s[n] = 0;
    o->len = n;
    u->pos += n;
    *out = o;
    return MG_OK;
}

static mg_status memo_put(up *u, uint64_t idx, mg_pyobj *o) {
    if (idx >= u->memo_limit)
        return UFAIL(u, MG_ERR_FORMAT, "memo index %llu out of range (pickle has %zu bytes)", (unsigned long long)idx,
                     u->len);
    if (idx >= u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        if (cap > u->memo_limit) cap = u->memo_limit;
        mg_pyobj **m = realloc(u->memo, cap * sizeof *m);
        if (!m) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        memset(m + u->memo_cap, 0, (cap - u->memo_cap) * sizeof *m);
        u->memo = m;
        u->memo_cap = cap;
    }
    u->memo[idx] = o;
    return MG_OK;
}

static mg_status memo_get(up *u, uint64_t idx) {
    if (idx >= u->memo_cap || !u->memo[idx])
        return UFAIL(u, MG_ERR_FORMAT, "memo index %llu was never stored (malformed pickle)", (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

static mg_status resolve_global(up *u, const char *module, const char *name, mg_pyobj **out) {
    mg_pyobj *g = NULL;
    int id = -1;
    mg_torch_stype st = MG_TS_FLOAT;
    if (!strcmp(module, "collections") && !strcmp(name, "OrderedDict")) id = MG_PYG_ORDERED_DICT;
    else if (!strcmp(module, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2")) id = MG_PYG_REBUILD_TENSOR_V2;
    else if (!strcmp(module, "torch._utils") && !strcmp(name, "_rebuild_tensor")) id = MG_PYG_REBUILD_TENSOR;
    else if (!strcmp(module, "torch._utils") && !strcmp(name, "_rebuild_parameter")) id = MG_PYG_REBUILD_PARAMETER;
    else if (!strcmp(module, "torch"))
        for (int t = 0; t < MG_TS_COUNT; t++)
            if (!strcmp(name, g_stype_names[t])) {
                id = MG_PYG_STORAGE_TYPE;
                st = (mg_torch_stype)t;
            }
    if (id < 0 && u->h->allow_foreign) {
        g = new_obj(u, MG_PY_FOREIGN);
        size_t n = strlen(module) + strlen(name) + 2;
        if (!g || !(g->s = malloc(n))) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        snprintf(g->s, n, "%s.%s", module, name);
        g->len = n - 1;
        if (!u->h->n_foreign++) snprintf(u->h->first_foreign, sizeof u->h->first_foreign, "%s", g->s);
        *out = g;
        return MG_OK;
    }
    if (id < 0)
        return mg_error_set(MG_ERR_FORMAT, __FILE__, __LINE__,
                            "%s: refusing to load global '%.100s.%.100s': only tensors and plain containers are "
                            "allowed (nothing was executed)",
                            u->what, module, name);
    g = new_obj(u, MG_PY_GLOBAL);
    if (!g) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
    g->global = (mg_py_global)id;
    g->stype = st;
    *out = g;
    return MG_OK;
}

/* Reads a text line (GLOBAL operands) into a NUL-terminated buffer. */
static mg_status read_line(up *u, char *dst, size_t cap) {
    const uint8_t *start = u->buf + u->pos;
    const uint8_t *nl = memchr(start, '\n', u->len - u->pos);
    if (!nl) return need(u, u->len - u->pos + 1);
    size_t n = (size_t)(nl - start);
    if (n >= cap) return UFAIL(u, MG_ERR_FORMAT, "GLOBAL name longer than %zu bytes", cap - 1);
    memcpy(dst, start, n);
    dst[n] = 0;
    if (strlen(dst) != n) return UFAIL(u, MG_ERR_FORMAT, "GLOBAL name contains a NUL byte");
    u->pos += n + 1;
    return MG_OK;
}

static mg_status tuple_from(up *u, size_t start, mg_pyobj **out) {
    mg_pyobj *t = new_obj(u, MG_PY_TUPLE);
    if (!t) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
    for (size_t i = start; i < u->sn; i++)
        if (!obj_push_item(t, u->stack[i])) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
    u->sn = start;
    *out = t;
    return MG_OK;
}

static mg_status get_int(up *u, const mg_pyobj *o, const char *what, int64_t *v) {
    if (!o || o->kind != MG_PY_INT)
        return UFAIL(u, MG_ERR_FORMAT, "%s: expected an int, found %s", what, o ? mg_py_kind_name(o->kind) : "nothing");
    *v = o->i;
    return MG_OK;
}

static mg_status int_tuple(up *u, const mg_pyobj *o, const char *what, int *n, int64_t *vals) {
    if (!o || (o->kind != MG_PY_TUPLE && o->kind != MG_PY_LIST))
        return UFAIL(u, MG_ERR_FORMAT, "tensor %s: expected a tuple, found %s", what,
                     o ? mg_py_kind_name(o->kind) : "nothing");
    if (o->n > MG_PY_MAX_DIMS)
        return UFAIL(u, MG_ERR_FORMAT, "tensor %s: %zu dimensions, at most %d supported", what, o->n, MG_PY_MAX_DIMS);
    for (size_t i = 0; i < o->n; i++) {
        MG_TRY(get_int(u, o->items[i], what, &vals[i]));
        if (vals[i] < 0) return UFAIL(u, MG_ERR_FORMAT, "tensor %s[%zu] = %lld is negative", what, i, (long long)vals[i]);
    }
    *n = (int)o->n;
    return MG_OK;
}

static mg_status do_reduce(up *u, mg_pyobj *fn, mg_pyobj *args, mg_pyobj **out) {
    if (fn->kind == MG_PY_FOREIGN) { /* lenient mode: never called, the result is another placeholder */
        *out = fn;
        return MG_OK;
    }
    if (fn->kind != MG_PY_GLOBAL)
        return UFAIL(u, MG_ERR_FORMAT, "cannot call a %s (only allowed globals are callable)", mg_py_kind_name(fn->kind));
    if (args->kind != MG_PY_TUPLE)
        return UFAIL(u, MG_ERR_FORMAT, "call arguments are a %s, expected a tuple", mg_py_kind_name(args->kind));
    switch (fn->global) {
    case MG_PYG_ORDERED_DICT: {
        mg_pyobj *d = new_obj(u, MG_PY_DICT);
        if (!d) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        if (args->n > 1) return UFAIL(u, MG_ERR_FORMAT, "OrderedDict() with %zu arguments", args->n);
        if (args->n == 1) {
            mg_pyobj *l = args->items[0];
            if (l->kind != MG_PY_LIST && l->kind != MG_PY_TUPLE)
                return UFAIL(u, MG_ERR_FORMAT, "OrderedDict(%s) not supported", mg_py_kind_name(l->kind));
            for (size_t i = 0; i < l->n; i++) {
                mg_pyobj *p = l->items[i];
                if ((p->kind != MG_PY_TUPLE && p->kind != MG_PY_LIST) || p->n != 2)
                    return UFAIL(u, MG_ERR_FORMAT, "OrderedDict item %zu is not a pair", i);
                if (!obj_push_item(d, p->items[0]) || !obj_push_item(d, p->items[1]))
                    return UFAIL(u, MG_ERR_NOMEM, "out of memory");
            }
        }
        *out = d;
        return MG_OK;
    }
    case MG_PYG_REBUILD_TENSOR_V2:
    case MG_PYG_REBUILD_TENSOR: {
        if (args->n < 4)
            return UFAIL(u, MG_ERR_FORMAT, "_rebuild_tensor with %zu arguments, expected at least 4", args->n);
        mg_pyobj *s = args->items[0];
        if (s->kind != MG_PY_STORAGE)
            return UFAIL(u, MG_ERR_FORMAT, "_rebuild_tensor: first argument is a %s, expected a storage",
                         mg_py_kind_name(s->kind));
        mg_pyobj *t = new_obj(u, MG_PY_TENSOR);
        if (!t) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        t->storage = s;
        t->stype = s->stype;
        MG_TRY(get_int(u, args->items[1], "tensor storage offset", &t->offset));
        if (t->offset < 0) return UFAIL(u, MG_ERR_FORMAT, "negative tensor storage offset %lld", (long long)t->offset);
        int nd = 0, ns = 0;
        MG_TRY(int_tuple(u, args->items[2], "size", &nd, t->size));
        MG_TRY(int_tuple(u, args->items[3], "stride", &ns, t->stride));
        if (nd != ns) return UFAIL(u, MG_ERR_FORMAT, "tensor size has %d dimensions but stride has %d", nd, ns);
        t->ndim = nd;
        *out = t;
        return MG_OK;
    }
    case MG_PYG_REBUILD_PARAMETER:
        if (args->n < 1 || args->items[0]->kind != MG_PY_TENSOR)
            return UFAIL(u, MG_ERR_FORMAT, "_rebuild_parameter: expected a tensor argument");
        *out = args->items[0];
        return MG_OK;
    case MG_PYG_STORAGE_TYPE:
        return UFAIL(u, MG_ERR_FORMAT, "refusing to construct torch.%s directly", g_stype_names[fn->stype]);
    }
    return UFAIL(u, MG_ERR_FORMAT, "unknown callable");
}

static mg_status step(up *u, int *done, mg_pyobj **result) {
    u->op_pos = u->pos;
    MG_TRY(need(u, 1));
    u->op = u->buf[u->pos++];
    uint64_t v;
    mg_pyobj *a, *b, *c, *o;
    size_t start = 0;
    switch (u->op) {
    case 0x80: /* PROTO */
        MG_TRY(take_le(u, 1, &v));
        if (v > 5) return UFAIL(u, MG_ERR_UNSUPPORTED, "pickle protocol %llu not supported (0..5)", (unsigned long long)v);
        return MG_OK;
    case 0x95: /* FRAME */
        return take_le(u, 8, &v);
    case '.': /* STOP */
        MG_TRY(pop(u, result));
        *done = 1;
        return MG_OK;
    case '(': /* MARK */
        if (u->mn == u->mcap) {
            size_t cap = u->mcap ? 2 * u->mcap : 32;
            size_t *m = realloc(u->marks, cap * sizeof *m);
            if (!m) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
            u->marks = m;
            u->mcap = cap;
        }
        u->marks[u->mn++] = u->sn;
        return MG_OK;
    case '0': /* POP */
        return pop(u, &a);
    case '1': /* POP_MARK */
        MG_TRY(pop_mark(u, &start));
        u->sn = start;
        return MG_OK;
    case '2': /* DUP */
        MG_TRY(top(u, &a));
        return push(u, a);
    case '}': return push(u, new_obj(u, MG_PY_DICT));
    case ']': return push(u, new_obj(u, MG_PY_LIST));
    case ')': return push(u, new_obj(u, MG_PY_TUPLE));
    case 'N': return push(u, new_obj(u, MG_PY_NONE));
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */
        o = new_obj(u, MG_PY_BOOL);
        if (o) o->i = u->op == 0x88;
        return push(u, o);
    case 'J': /* BININT */
        MG_TRY(take_le(u, 4, &v));
        o = new_obj(u, MG_PY_INT);
        if (o) o->i = (int32_t)(uint32_t)v;
        return push(u, o);
    case 'K': /* BININT1 */
    case 'M': /* BININT2 */
        MG_TRY(take_le(u, u->op == 'K' ? 1 : 2, &v));
        o = new_obj(u, MG_PY_INT);
        if (o) o->i = (int64_t)v;
        return push(u, o);
    case 0x8a: /* LONG1 */
    case 0x8b: { /* LONG4 */
        MG_TRY(take_le(u, u->op == 0x8a ? 1 : 4, &v));
        if (v > u->len) return need(u, (size_t)v);
        MG_TRY(need(u, (size_t)v));
        const uint8_t *p = u->buf + u->pos;
        if (v <= 8) {
            uint64_t x = rd_le(p, (int)v);
            if (v > 0 && v < 8 && (p[v - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * v); /* sign-extend */
            u->pos += (size_t)v;
            o = new_obj(u, MG_PY_INT);
            if (o) o->i = (int64_t)x;
            return push(u, o);
        }
        MG_TRY(new_str(u, MG_PY_BIGINT, (size_t)v, &o));
        return push(u, o);
    }
    case 'G': { /* BINFLOAT, big-endian */
        MG_TRY(need(u, 8));
        uint64_t x = 0;
        for (int i = 0; i < 8; i++) x = (x << 8) | u->buf[u->pos + (size_t)i];
        u->pos += 8;
        o = new_obj(u, MG_PY_FLOAT);
        if (o) memcpy(&o->f, &x, 8);
        return push(u, o);
    }
    case 0x8c: /* SHORT_BINUNICODE */
    case 'X':  /* BINUNICODE */
    case 0x8d: /* BINUNICODE8 */
    case 'U':  /* SHORT_BINSTRING */
    case 'T':  /* BINSTRING */
    case 'C':  /* SHORT_BINBYTES */
    case 'B':  /* BINBYTES */
    case 0x8e: { /* BINBYTES8 */
        int w = (u->op == 0x8c || u->op == 'U' || u->op == 'C') ? 1 : (u->op == 0x8d || u->op == 0x8e) ? 8 : 4;
        MG_TRY(take_le(u, w, &v));
        if (u->op == 'T' && (int32_t)(uint32_t)v < 0) return UFAIL(u, MG_ERR_FORMAT, "negative string length");
        if (v > u->len - u->pos) return need(u, v > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)v);
        mg_py_kind k = (u->op == 'C' || u->op == 'B' || u->op == 0x8e) ? MG_PY_BYTES : MG_PY_STR;
        MG_TRY(new_str(u, k, (size_t)v, &o));
        return push(u, o);
    }
    case 0x85: case 0x86: case 0x87: { /* TUPLE1/2/3 */
        size_t n = (size_t)(u->op - 0x84);
        size_t floor = u->mn ? u->marks[u->mn - 1] : 0;
        if (u->sn < floor + n) return UFAIL(u, MG_ERR_FORMAT, "stack underflow (malformed pickle)");
        MG_TRY(tuple_from(u, u->sn - n, &o));
        return push(u, o);
    }
    case 't': /* TUPLE */
        MG_TRY(pop_mark(u, &start));
        MG_TRY(tuple_from(u, start, &o));
        return push(u, o);
    case 'l': /* LIST */
    case 'd': /* DICT */
        MG_TRY(pop_mark(u, &start));
        if (u->op == 'd' && (u->sn - start) % 2)
            return UFAIL(u, MG_ERR_FORMAT, "DICT with an odd number of items");
        MG_TRY(tuple_from(u, start, &o));
        o->kind = u->op == 'l' ? MG_PY_LIST : MG_PY_DICT;
        return push(u, o);
    case 's': /* SETITEM */
        MG_TRY(pop(u, &b));
        MG_TRY(pop(u, &a));
        MG_TRY(top(u, &c));
        if (c->kind == MG_PY_FOREIGN) return MG_OK;
        if (c->kind != MG_PY_DICT) return UFAIL(u, MG_ERR_FORMAT, "SETITEM on a %s", mg_py_kind_name(c->kind));
        if (!obj_push_item(c, a) || !obj_push_item(c, b)) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        return MG_OK;
    case 'u': /* SETITEMS */
        MG_TRY(pop_mark(u, &start));
        if ((u->sn - start) % 2) return UFAIL(u, MG_ERR_FORMAT, "SETITEMS with an odd number of items");
        if (start == 0 || (u->mn && u->marks[u->mn - 1] >= start))
            return UFAIL(u, MG_ERR_FORMAT, "SETITEMS without a target (malformed pickle)");
        c = u->stack[start - 1];
        if (c->kind == MG_PY_FOREIGN) {
            u->sn = start;
            return MG_OK;
        }
        if (c->kind != MG_PY_DICT) return UFAIL(u, MG_ERR_FORMAT, "SETITEMS on a %s", mg_py_kind_name(c->kind));
        for (size_t i = start; i < u->sn; i++)
            if (!obj_push_item(c, u->stack[i])) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        u->sn = start;
        return MG_OK;
    case 'a': /* APPEND */
        MG_TRY(pop(u, &a));
        MG_TRY(top(u, &c));
        if (c->kind == MG_PY_FOREIGN) return MG_OK;
        if (c->kind != MG_PY_LIST) return UFAIL(u, MG_ERR_FORMAT, "APPEND on a %s", mg_py_kind_name(c->kind));
        if (!obj_push_item(c, a)) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        return MG_OK;
    case 'e': /* APPENDS */
        MG_TRY(pop_mark(u, &start));
        if (start == 0 || (u->mn && u->marks[u->mn - 1] >= start))
            return UFAIL(u, MG_ERR_FORMAT, "APPENDS without a target (malformed pickle)");
        c = u->stack[start - 1];
        if (c->kind == MG_PY_FOREIGN) {
            u->sn = start;
            return MG_OK;
        }
        if (c->kind != MG_PY_LIST) return UFAIL(u, MG_ERR_FORMAT, "APPENDS on a %s", mg_py_kind_name(c->kind));
        for (size_t i = start; i < u->sn; i++)
            if (!obj_push_item(c, u->stack[i])) return UFAIL(u, MG_ERR_NOMEM, "out of memory");
        u->sn = start;
        return MG_OK;
    case 'q': /* BINPUT */
    case 'r': /* LONG_BINPUT */
        MG_TRY(take_le(u, u->op == 'q' ? 1 : 4, &v));
        MG_TRY(top(u, &a));
        return memo_put(u, v, a);
    case 0x94: /* MEMOIZE */
        MG_TRY(top(u, &a));
        return memo_put(u, u->memo_next++, a);
    case 'h': /* BINGET */
    case 'j': /* LONG_BINGET */
        MG_TRY(take_le(u, u->op == 'h' ? 1 : 4, &v));
        return memo_get(u, v);
    case 'c': { /* GLOBAL */
        char module[256], name[256];
        MG_TRY(read_line(u, module, sizeof module));
        MG_TRY(read_line(u, name, sizeof name));
        MG_TRY(resolve_global(u, module, name, &o));
        return push(u, o);
    }
    case 0x93: /* STACK_GLOBAL */
        MG_TRY(pop(u, &b));
        MG_TRY(pop(u, &a));
        if (a->kind != MG_PY_STR || b->kind != MG_PY_STR)
            return UFAIL(u, MG_ERR_FORMAT, "STACK_GLOBAL operands are not strings");
        MG_TRY(resolve_global(u, a->s, b->s, &o));
        return push(u, o);
    case 'R': /* REDUCE */
    case 0x81: /* NEWOBJ */
        MG_TRY(pop(u, &b));
        MG_TRY(pop(u, &a));
        if (u->op == 0x81 && a->kind != MG_PY_FOREIGN && !(a->kind == MG_PY_GLOBAL && a->global == MG_PYG_ORDERED_DICT))
            return UFAIL(u, MG_ERR_FORMAT, "NEWOBJ of a %s not supported", mg_py_kind_name(a->kind));
        MG_TRY(do_reduce(u, a, b, &o));
        return push(u, o);
    case 'b': /* BUILD: state of OrderedDict (e.g. _metadata) or tensor; ignored */
        MG_TRY(pop(u, &b));
        MG_TRY(top(u, &a));
        if (a->kind != MG_PY_DICT && a->kind != MG_PY_TENSOR && a->kind != MG_PY_FOREIGN)
            return UFAIL(u, MG_ERR_FORMAT, "BUILD on a %s not supported", mg_py_kind_name(a->kind));
        return MG_OK;
    case 'Q': /* BINPERSID */
        MG_TRY(pop(u, &a));
        if (!u->pl) return UFAIL(u, MG_ERR_FORMAT, "persistent id not expected here");
        MG_TRY(u->pl(u->ctx, u->h, u->what, a, &o));
        return push(u, o);
    default:
        return UFAIL(u, MG_ERR_UNSUPPORTED, "unsupported pickle opcode '%c' (0x%02x): not a PyTorch state dict?",
                     (u->op >= 32 && u->op < 127) ? u->op : '?', u->op);
    }
}

mg_status mg_unpickle(mg_pyheap *h, const char *what, const uint8_t *buf, size_t len, mg_persistent_load_fn pl,
                      void *ctx, mg_pyobj **out, size_t *consumed) {
    up u;
    memset(&u, 0, sizeof u);
    u.h = h;
    u.what = what;
    u.buf = buf;
    u.len = len;
    u.memo_limit = len + 16;
    u.pl = pl;
    u.ctx = ctx;
    mg_status s = MG_OK;
    int done = 0;
    mg_pyobj *result = NULL;
    while (!done && s == MG_OK) s = step(&u, &done, &result);
    free(u.stack);
    free(u.marks);
    free(u.memo);
    if (s != MG_OK) return s;
    *out = result;
    if (consumed) *consumed = u.pos;
    return MG_OK;
}
