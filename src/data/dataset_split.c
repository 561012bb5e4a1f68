/* dataset_split.c: opening the train or validation split of a dataset root, in the ImageNet folder
 * layout or as Fashion-MNIST/MNIST IDX files (see mg_dataset_open_split in data.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "multigrain/data.h"

mg_status mg_dataset_open_split(const char *root, const char *split, int64_t limit, mg_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    char *dir = mg_path_join(root, split);
    if (!dir) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    mg_status s;
    if (mg_path_is_dir(dir)) {
        mg_scan_opts so = {.cache_path = NULL, .recursive = true};
        s = mg_dataset_scan_folder(dir, &so, ds);
    } else {
        const char *pre = !strcmp(split, "train") ? "train" : "t10k";
        char img[4096], lab[4096];
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte", root, pre);
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte", root, pre);
        if (mg_path_exists(img))
            s = mg_dataset_read_idx(img, lab, ds);
        else
            s = MG_FAIL(MG_ERR_IO, "%s: no %s/ folder (ImageNet layout %s/<class>/*.jpg) and no %s IDX file", root,
                        split, split, img);
    }
    free(dir);
    if (s == MG_OK && limit > 0 && ds->n > limit) ds->n = limit;
    return s;
}
