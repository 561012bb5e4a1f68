/* commands.c: the table of `multigrain` subcommands with their help texts. A command whose
 * `run` is NULL is registered but not written yet: it reports so and exits non-zero. */
#include <string.h>

#include "cli/cli.h"

const mg_command mg_commands[] = {
    {"train", "train a MultiGrain network (joint classification + retrieval loss)",
     "usage: multigrain train --config FILE --data ROOT --out RUN_DIR [options]\n"
     "\n"
     "Trains a MultiGrain network on an ImageNet-layout dataset (ROOT/train/<class>/*.jpg).\n"
     "\n"
     "options:\n"
     "  -c, --config FILE       YAML config (configs/*.yaml); reference-port keys accepted\n"
     "  -d, --data ROOT         dataset root holding train/ and val/\n"
     "  -o, --out RUN_DIR       run folder: checkpoints, metrics.jsonl, effective config\n"
     "      --resume PATH       continue a run (RUN_DIR or a checkpoint file)\n"
     "      --set KEY=VALUE     override one config key (repeatable)\n"
     "  -b, --batch-size N      global batch size (1..1048576)\n"
     "      --epochs N          number of epochs (1..100000)\n"
     "      --lr X              base learning rate (0..100)\n"
     "  -j, --threads N         compute threads (0 = all cores, default)\n"
     "      --seed N            random seed (0..2^63-1)\n"
     "      --print-lr          print the learning-rate schedule (step epoch lr) and exit\n"
     "      --lr-every N        with --print-lr: a row every N steps (default: epoch boundaries)\n"
     "      --steps-per-epoch N with --print-lr: steps per epoch (default from --train-images)\n"
     "      --train-images N    with --print-lr: training images (default 1281167, ImageNet)\n"
     "  -h, --help              show this help\n"
     "\n"
     "Precedence: defaults < --config < --set (in order) < the option shortcuts above.\n"
     "Keys and schedules: docs/config.md.\n"
     "\n"
     "Data parallel: start the same command under an MPI launcher, e.g.\n"
     "  mpirun -np 4 multigrain train -c C --data ROOT --out RUN_DIR --threads 2\n"
     "  srun --mpi=pmix multigrain train ...    (or scripts/run_distribute_train.sh ROOT N C)\n"
     "batch_size stays the global batch; rank 0 broadcasts the initial state and alone writes\n"
     "RUN_DIR; sync_bn, global_sampling, dist_timeout, dist_bucket_mb: docs/config.md.\n",
     mg_cmd_train},
    {"eval", "top-1/top-5 accuracy of a checkpoint on a labelled image folder",
     "usage: multigrain eval --checkpoint C --data ROOT [--size 224] [--p P] [--json FILE]\n"
     "       multigrain eval --checkpoint C --data ROOT --mode rect --max-side S [--p P] [--json FILE]\n"
     "\n"
     "Evaluates classification accuracy on ROOT/val/<class>/*.jpg (or the t10k IDX files in ROOT)\n"
     "with the classic test transform: resize the short side to int(256/224*size), centre crop size.\n"
     "rect: the full image resized to longest side S (no crop), one image per forward pass (the\n"
     "network re-plans at each change of input shape: slower than crop; val/ folders only).\n"
     "\n"
     "options:\n"
     "  -c, --checkpoint C      multigrain checkpoint\n"
     "  -d, --data ROOT         dataset root holding val/ (or IDX files)\n"
     "      --size S            test crop size (default 224)\n"
     "      --mode crop|rect    crop (default) or rect (full image, longest side --max-side)\n"
     "      --max-side S        longest side in rect mode (default 224; implies --mode rect)\n"
     "      --p P               GeM exponent (default: the checkpoint's)\n"
     "      --batch-size N      images per forward pass (default 32)\n"
     "      --limit N           only the first N images\n"
     "      --json FILE         also write the result as JSON\n"
     "  -j, --threads N         compute threads (0 = all cores)\n"
     "      --workers N         decoding threads (default 2)\n",
     mg_cmd_eval},
    {"embed", "write one L2-normalised embedding per image to a .npy file",
     "usage: multigrain embed --checkpoint C --images DIR_OR_LIST --out E.npy [--max-side S] [--p P]\n"
     "                       [--whiten W.safetensors | --pooled]\n"
     "\n"
     "Writes an N x D float32 .npy file and E.txt with the image paths in the same order.\n"
     "D: the GeM dimension, D' for a whitened checkpoint, the whitening's D' with --whiten.\n"
     "\n"
     "options:\n"
     "  -c, --checkpoint C      multigrain checkpoint (.safetensors; see multigrain convert)\n"
     "  -i, --images PATH       a folder (every .jpg/.jpeg/.png below it, sorted) or a list file\n"
     "  -o, --out E.npy         output embeddings (E.txt gets the paths)\n"
     "      --mode rect|crop    rect (default): longest side --max-side, no crop; crop: classic centre crop\n"
     "      --max-side S        longest side in rect mode (default 224)\n"
     "      --size S            crop size in crop mode (default 224)\n"
     "      --p P               GeM exponent (default: the checkpoint's)\n"
     "      --whiten W          apply a whitening file (whiten --embeddings) and re-normalise\n"
     "      --pooled            write the raw GeM vectors e instead (input of whiten --fold-into)\n"
     "  -j, --threads N         compute threads (0 = all cores)\n",
     mg_cmd_embed},
    {"classify", "print the top-5 classes of images",
     "usage: multigrain classify --checkpoint C IMAGE...\n"
     "\n"
     "Prints the most probable classes (index, probability, name) for each image.\n"
     "\n"
     "options:\n"
     "  -c, --checkpoint C      multigrain checkpoint\n"
     "      --top K             classes to print (default 5)\n"
     "      --mode crop|rect    crop (default): resize short side to 256/224*size, centre crop\n"
     "      --size S            crop size (default 224)\n"
     "      --max-side S        rect mode with this longest side\n"
     "      --p P               GeM exponent (default: the checkpoint's)\n"
     "  -j, --threads N         compute threads (0 = all cores)\n",
     mg_cmd_classify},
    {"search", "exact cosine k-nearest-neighbour search between two embedding files",
     "usage: multigrain search --index DB.npy --query Q.npy -k K [--out results.tsv] [--threads N]\n"
     "                         [--normalize] [--blas-threads]\n"
     "\n"
     "Writes tab-separated lines 'query_index db_index rank score' (rank from 0, best first;\n"
     "equal scores: lower db_index first) to --out (atomically) or stdout. Inputs: float32 [N, D].\n"
     "  --normalize       L2-normalise the rows of both files first (default: assume normalised)\n"
     "  -j, --threads N   compute threads (0 = all cores, default)\n"
     "  --blas-threads    multi-threaded sgemm instead of thread-pool tasks (for benchmarking)\n",
     mg_cmd_search},
    {"whiten", "learn PCA whitening from embeddings, or fold it into a checkpoint",
     "usage: multigrain whiten --embeddings E.npy --out W.safetensors [--dim D] [--eps X]\n"
     "       multigrain whiten --embeddings E_pooled.npy --fold-into C.safetensors --out C2.safetensors\n"
     "\n"
     "Learns PCA whitening (mean, covariance with N-1, float64 eigendecomposition; P = U / sqrt(eigenvalue))\n"
     "from float32 [N, D] embeddings (rows L2-normalised first); writes tensors whiten.mean [D] and\n"
     "whiten.P [D, D'] (apply with embed --whiten). --fold-into takes the raw GeM vectors e of checkpoint C\n"
     "(embed --pooled), learns on l2n([e, 1]) and writes a whitened copy of C in the recipe's form:\n"
     "whiten.mean [D+1], whiten.P [D+1, D+1], fc.weight [K, D+1] = [W | b] P^-T, fc.bias = [W | b] m\n"
     "(see docs/retrieval.md, docs/formats.md).\n"
     "  --dim D          keep the D leading components (default: all; not with --fold-into)\n"
     "  --eps X          eigenvalue floor relative to the largest (default 1e-10)\n"
     "  -j, --threads N  compute threads (0 = all cores, default)\n",
     mg_cmd_whiten},
    {"tune-p", "choose the GeM exponent p* on the augmented-copy proxy task",
     "usage: multigrain tune-p --checkpoint C --root ROOT [--size S] [--p-list 1,2,3,4,5] [--out C2.safetensors]\n"
     "\n"
     "Recipe §1.7a: each of the first --queries images of ROOT's val split, strongly augmented\n"
     "(--copies versions per image, 5 by default, the same copies for every p), must retrieve its\n"
     "original among the first\n"
     "--database images (crop of --size). Prints mAP and recall@1 per p and p* = the best mAP (the\n"
     "first on equal values); --out writes a copy of C with pool.p = p*.\n"
     "\n"
     "options:\n"
     "  -c, --checkpoint C      multigrain checkpoint\n"
     "      --root ROOT         dataset root (val/ folder or t10k IDX files)\n"
     "      --size S            image size (default 224)\n"
     "      --p-list LIST       comma-separated values of p (default 1,2,3,4,5)\n"
     "      --out C2            write the checkpoint with p* (atomically)\n"
     "      --queries N         augmented queries (default 1000)\n"
     "      --database N        originals (default 1000)\n"
     "      --scale-min X       smallest crop area of the queries (default 0.25)\n"
     "      --seed N            augmentation seed (default 1)\n"
     "      --copies N          augmented versions per query image (default 5)\n"
     "  -j, --threads N         compute threads (0 = all cores)\n",
     mg_cmd_tune_p},
    {"retrieval-eval", "Holidays, UKBench, Copydays, list-based and augmented-copy retrieval benchmarks",
     "usage: multigrain retrieval-eval --checkpoint C --dataset copies --root ROOT [options]\n"
     "       multigrain retrieval-eval --checkpoint C --dataset list --queries Q.txt --database DB.txt --gt GT.tsv\n"
     "                                 [--root DIR] [--whiten W] [--max-side S] [--ap trapezoid|standard]\n"
     "       multigrain retrieval-eval --checkpoint C --dataset holidays --root DIR [--rotate FILE] [options]\n"
     "       multigrain retrieval-eval --checkpoint C --dataset ukbench --root DIR [options]\n"
     "       multigrain retrieval-eval --checkpoint C --dataset copydays --root DIR [--distractors D] [options]\n"
     "\n"
     "copies: each of --queries images of ROOT's val split, strongly augmented (crop of at least\n"
     "--scale-min of the area, flip, colour jitter, lighting), must find its original among the first\n"
     "--database images; prints mAP (one relevant item per query: AP = 1/(1+rank)) and recall@1.\n"
     "list / holidays / ukbench / copydays: every image embedded at full resolution (longest side\n"
     "--max-side, no crop, one forward per image), optionally whitened, ranked by exact cosine k-NN\n"
     "(docs/retrieval.md).\n"
     "list: mAP over the queries of GT.tsv (query<TAB>relevant...), a query also in the database removed\n"
     "from its list. holidays: NNNNNN.jpg below DIR, group = id/100, queries id%100 == 0 (removed from\n"
     "their list), trapezoid mAP. ukbench: ukbenchNNNNN.jpg, every image a query, N-S score (top 4,\n"
     "query included). copydays: DIR/strong/ queries against DIR/original/ (+ --distractors), relevant =\n"
     "the originals with the same 6-digit id / 100, trapezoid mAP.\n"
     "\n"
     "options:\n"
     "  -c, --checkpoint C      multigrain checkpoint\n"
     "      --dataset NAME      copies, list, holidays, ukbench or copydays\n"
     "      --root DIR          copies: dataset root (val/ or t10k IDX); holidays/ukbench: image folder;\n"
     "                          list: prefix of relative paths in the list files\n"
     "      --queries N|FILE    copies: augmented queries (default 1000); list: query list file\n"
     "      --database N|FILE   copies: originals (default 1000); list: database list file\n"
     "      --gt FILE           list: ground truth (query<TAB>relevant[<TAB>relevant...])\n"
     "      --distractors D     copydays: a folder or list file of distractor images added to the database\n"
     "      --max-side S        longest side of the images (default 224; not copies)\n"
     "      --p P               GeM exponent (default: the checkpoint's; not copies)\n"
     "      --whiten W          apply a whitening file (whiten --embeddings) and re-normalise\n"
     "      --rotate FILE       'name degrees' lines: turn these images clockwise (0/90/180/270) first\n"
     "      --ap KIND           trapezoid (default, INRIA) or standard AP (list, holidays, copydays)\n"
     "      --out FILE          per-query results: query<TAB>ap (ukbench: query<TAB>ns), atomically\n"
     "      --size S            copies: image size (default 224)\n"
     "      --scale-min X       copies: smallest crop area of the queries (default 0.25)\n"
     "      --copies N          copies: augmented versions per query image (default 1)\n"
     "      --save-embeddings F write the database embeddings to F (.npy, paths in F .txt); list\n"
     "                          and copydays also write the queries to F with .queries.npy\n"
     "      --seed N            copies: augmentation seed\n"
     "  -j, --threads N         compute threads (0 = all cores)\n",
     mg_cmd_retrieval_eval},
    {"convert", "convert PyTorch .pth / torchvision weights to a multigrain checkpoint",
     "usage: multigrain convert --from X.pth --to Y.safetensors [--arch A] [--num-classes K] [--p P]\n"
     "\n"
     "Reads zip and legacy PyTorch checkpoints with a restricted unpickler (nothing is executed):\n"
     "a torchvision ResNet state dict, a MultiGrain {'model_state': ...} or a {'state_dict': ...}.\n"
     "\n"
     "options:\n"
     "      --from X.pth        PyTorch checkpoint to read\n"
     "      --to Y.safetensors  multigrain checkpoint to write (atomically)\n"
     "      --arch A            resnet18|34|50|101|152|se_resnet50 (default: inferred from the keys)\n"
     "      --num-classes K     expected class count (default: from fc.weight)\n"
     "      --p P               GeM exponent to store (default: pool.p from the file, else 1)\n"
     "      --skip-foreign-objects  skip (never run) objects of other classes outside the state dict,\n"
     "                          e.g. a pickled optimizer in a MultiGrain checkpoint; default: refuse\n"
     "  -h, --help              show this help\n",
     mg_cmd_convert},
    {"report", "write an HTML report with plots of a training run",
     "usage: multigrain report RUN_DIR [--out FILE]\n"
     "\n"
     "Writes an offline HTML page (inline SVG plots of loss, learning rate, top-1/top-5 and images/s\n"
     "over steps, from RUN_DIR/metrics.jsonl) to FILE, default RUN_DIR/report.html.\n"
     "  -o, --out FILE   where to write the page\n",
     mg_cmd_report},
    {"bench", "measure the speed of ops, models and the data pipeline",
     "usage: multigrain bench ops|model|data [options]\n", NULL},
};
const int mg_command_count = (int)(sizeof mg_commands / sizeof mg_commands[0]);

const mg_command *mg_command_find(const char *name) {
    for (int i = 0; i < mg_command_count; i++)
        if (!strcmp(mg_commands[i].name, name)) return &mg_commands[i];
    return NULL;
}
