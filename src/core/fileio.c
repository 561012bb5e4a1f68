/* fileio.c: whole-file reads, atomic writes and path helpers (see fileio.h). */
#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mg_status mg_file_read_all(const char *path, void **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return MG_FAIL(MG_ERR_IO, "%s: cannot open for reading: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return MG_FAIL(MG_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return MG_FAIL(MG_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it", path, n + 1);
    }
    size_t got = n ? fread(buf, 1, n, fp) : 0;
    int err = ferror(fp);
    fclose(fp);
    if (got != n || err) {
        free(buf);
        return MG_FAIL(MG_ERR_IO, "%s: read %zu of %zu bytes", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return MG_OK;
}

static char *mg_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

mg_status mg_atomic_file_open(mg_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    af->path = mg_strdup(path);
    size_t n = strlen(path) + 32;
    af->tmp_path = malloc(n);
    if (!af->path || !af->tmp_path) {
        mg_atomic_file_abort(af);
        return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        mg_status s = MG_FAIL(MG_ERR_IO, "%s: cannot create temporary file: %s", af->tmp_path,
                              strerror(errno));
        free(af->path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return s;
    }
    return MG_OK;
}

mg_status mg_atomic_file_write(mg_atomic_file *af, const void *data, size_t size) {
    MG_ASSERT(af && af->fp);
    if (size && fwrite(data, 1, size, af->fp) != size)
        return MG_FAIL(MG_ERR_IO, "%s: write failed: %s", af->tmp_path, strerror(errno));
    return MG_OK;
}

static void fsync_parent_dir(const char *path) {
    char *copy = mg_strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

mg_status mg_atomic_file_commit(mg_atomic_file *af) {
    MG_ASSERT(af && af->fp);
    mg_status s = MG_OK;
    if (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0)
        s = MG_FAIL(MG_ERR_IO, "%s: flush failed: %s", af->tmp_path, strerror(errno));
    if (fclose(af->fp) != 0 && s == MG_OK)
        s = MG_FAIL(MG_ERR_IO, "%s: close failed: %s", af->tmp_path, strerror(errno));
    af->fp = NULL;
    if (s == MG_OK && rename(af->tmp_path, af->path) != 0)
        s = MG_FAIL(MG_ERR_IO, "%s: cannot rename temporary file into place: %s", af->path,
                    strerror(errno));
    if (s == MG_OK)
        fsync_parent_dir(af->path);
    else
        unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return s;
}

void mg_atomic_file_abort(mg_atomic_file *af) {
    if (!af) return;
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

mg_status mg_file_write_atomic(const char *path, const void *data, size_t size) {
    mg_atomic_file af;
    MG_TRY(mg_atomic_file_open(&af, path));
    mg_status s = mg_atomic_file_write(&af, data, size);
    if (s != MG_OK) {
        mg_atomic_file_abort(&af);
        return s;
    }
    return mg_atomic_file_commit(&af);
}

bool mg_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool mg_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

mg_status mg_dir_create(const char *path) {
    char *p = mg_strdup(path);
    if (!p) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
    for (char *c = p + 1;; c++) {
        if (*c == '/' || *c == '\0') {
            char saved = *c;
            *c = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                mg_status s = MG_FAIL(MG_ERR_IO, "%s: cannot create folder: %s", p, strerror(errno));
                free(p);
                return s;
            }
            *c = saved;
            if (saved == '\0') break;
        }
    }
    free(p);
    if (!mg_path_is_dir(path)) return MG_FAIL(MG_ERR_IO, "%s: exists and is not a folder", path);
    return MG_OK;
}

char *mg_path_join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    while (na > 1 && a[na - 1] == '/') na--;
    char *out = malloc(na + nb + 2);
    if (!out) return NULL;
    memcpy(out, a, na);
    out[na] = '/';
    memcpy(out + na + 1, b, nb + 1);
    return out;
}
