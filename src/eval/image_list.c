/* image_list.c: image paths from a folder walk or a list file (see image_list.h). */
#include "eval/image_list.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/fileio.h"

static mg_status push(mg_image_list *l, int64_t *cap, char *path) {
    if (!path) return MG_FAIL(MG_ERR_NOMEM, "image list: out of memory");
    if (l->n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 256;
        char **np = realloc(l->paths, (size_t)nc * sizeof *np);
        if (!np) {
            free(path);
            return MG_FAIL(MG_ERR_NOMEM, "image list: out of memory");
        }
        l->paths = np;
        *cap = nc;
    }
    l->paths[l->n++] = path;
    return MG_OK;
}

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static mg_status walk(const char *dir, mg_image_list *l, int64_t *cap, int depth) {
    if (depth > 64) return MG_FAIL(MG_ERR_IO, "%s: folders nested more than 64 deep", dir);
    DIR *d = opendir(dir);
    if (!d) return MG_FAIL(MG_ERR_IO, "%s: cannot open folder", dir);
    mg_status s = MG_OK;
    struct dirent *e;
    while (s == MG_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = mg_path_join(dir, e->d_name);
        if (!p) {
            s = MG_FAIL(MG_ERR_NOMEM, "image list: out of memory");
            break;
        }
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            s = walk(p, l, cap, depth + 1);
            free(p);
        } else if (S_ISREG(st.st_mode) && is_image_name(e->d_name)) {
            s = push(l, cap, p);
        } else {
            free(p);
        }
    }
    closedir(d);
    return s;
}

static mg_status read_list(const char *path, mg_image_list *l, int64_t *cap) {
    void *buf;
    size_t size;
    MG_TRY(mg_file_read_all(path, &buf, &size));
    char *dir = strdup(path);
    if (!dir) {
        free(buf);
        return MG_FAIL(MG_ERR_NOMEM, "image list: out of memory");
    }
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else strcpy(dir, ".");
    mg_status s = MG_OK;
    int lineno = 0;
    for (char *line = buf, *next; s == MG_OK && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = '\0';
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#') continue;
        /* "path [label]": the path ends at the last whitespace when a label follows */
        char *sp = strrchr(line, ' ');
        char *tab = strrchr(line, '\t');
        if (tab > sp) sp = tab;
        if (sp) {
            char *end;
            strtol(sp + 1, &end, 10);
            if (*end == '\0') *sp = '\0';
        }
        s = push(l, cap, line[0] == '/' ? strdup(line) : mg_path_join(dir, line));
    }
    if (s == MG_OK && l->n == 0) s = MG_FAIL(MG_ERR_FORMAT, "%s: the list names no image", path);
    free(dir);
    free(buf);
    return s;
}

mg_status mg_image_list_open(const char *dir_or_list, mg_image_list *l) {
    memset(l, 0, sizeof *l);
    int64_t cap = 0;
    mg_status s;
    if (mg_path_is_dir(dir_or_list)) {
        s = walk(dir_or_list, l, &cap, 0);
        if (s == MG_OK && l->n == 0)
            s = MG_FAIL(MG_ERR_IO, "%s: no .jpg, .jpeg or .png image in this folder", dir_or_list);
        if (s == MG_OK) qsort(l->paths, (size_t)l->n, sizeof *l->paths, cmp_str);
    } else if (mg_path_exists(dir_or_list)) {
        s = read_list(dir_or_list, l, &cap);
    } else {
        s = MG_FAIL(MG_ERR_IO, "%s: no such folder or list file", dir_or_list);
    }
    if (s != MG_OK) mg_image_list_free(l);
    return s;
}

void mg_image_list_free(mg_image_list *l) {
    if (!l) return;
    for (int64_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof *l);
}
