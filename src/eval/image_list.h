/* image_list.h: the images a command works on, from a folder (every .jpg/.jpeg/.png below it,
 * recursively, in sorted path order) or from a list file (one path per line, relative paths taken
 * from the list's folder; '#' comments and blank lines skipped; an optional label after the path is
 * ignored). */
#ifndef MG_EVAL_IMAGE_LIST_H
#define MG_EVAL_IMAGE_LIST_H

#include <stdint.h>

#include "multigrain/status.h"

typedef struct mg_image_list {
    int64_t n;
    char **paths; /* full paths, malloc'd */
} mg_image_list;

mg_status mg_image_list_open(const char *dir_or_list, mg_image_list *l);
void mg_image_list_free(mg_image_list *l);

#endif
