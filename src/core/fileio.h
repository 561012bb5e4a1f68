/* fileio.h: whole-file reads, atomic writes (temp file, fsync, rename, fsync of the folder),
 * and small path helpers. Every failure names the path and the system's reason. */
#ifndef MG_CORE_FILEIO_H
#define MG_CORE_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "multigrain/status.h"

/* Reads a whole file into a malloc'd buffer (NUL-terminated for convenience; *size excludes it). */
mg_status mg_file_read_all(const char *path, void **data, size_t *size);

/* Atomic writer: bytes go to "<path>.tmp.<pid>" in the same folder; commit fsyncs and renames it
 * over `path` and fsyncs the folder; abort removes the temporary file. Either the old or the new
 * file is visible at `path`, never a partial one. */
typedef struct mg_atomic_file {
    FILE *fp;
    char *path;
    char *tmp_path;
} mg_atomic_file;

mg_status mg_atomic_file_open(mg_atomic_file *af, const char *path);
mg_status mg_atomic_file_write(mg_atomic_file *af, const void *data, size_t size);
mg_status mg_atomic_file_commit(mg_atomic_file *af);
void mg_atomic_file_abort(mg_atomic_file *af);

/* One-shot atomic write of a buffer. */
mg_status mg_file_write_atomic(const char *path, const void *data, size_t size);

/* mkdir -p. */
mg_status mg_dir_create(const char *path);
bool mg_path_exists(const char *path);
bool mg_path_is_dir(const char *path);
/* Joins a and b with one '/', into a malloc'd string (NULL on allocation failure). */
char *mg_path_join(const char *a, const char *b);

#endif
