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
     "      --print-lr          print the learning-rate schedule and exit\n"
     "  -h, --help              show this help\n",
     mg_cmd_train},
    {"eval", "top-1/top-5 accuracy of a checkpoint on a labelled image folder",
     "usage: multigrain eval --checkpoint C --data ROOT/val [--mode crop --size 224 | --mode rect --max-side 500]\n"
     "                      [--p P] [--json FILE]\n"
     "\n"
     "Evaluates classification accuracy at any test resolution and GeM exponent.\n",
     NULL},
    {"embed", "write one L2-normalised embedding per image to a .npy file",
     "usage: multigrain embed --checkpoint C --images DIR_OR_LIST --out E.npy [--max-side S] [--p P]\n"
     "                       [--whiten W.safetensors]\n"
     "\n"
     "Writes an N x D float32 .npy file and E.txt with the image paths in the same order.\n",
     NULL},
    {"classify", "print the top-5 classes of images",
     "usage: multigrain classify --checkpoint C IMAGE...\n"
     "\n"
     "Prints the five most probable classes and their probabilities for each image.\n",
     NULL},
    {"search", "exact cosine k-nearest-neighbour search between two embedding files",
     "usage: multigrain search --index DB.npy --query Q.npy -k K [--out results.tsv]\n"
     "\n"
     "Writes lines 'query_index db_index rank score' (rank from 0).\n",
     NULL},
    {"whiten", "learn PCA whitening from embeddings, or fold it into a checkpoint",
     "usage: multigrain whiten --embeddings E.npy --out W.safetensors [--dim D]\n"
     "       multigrain whiten --embeddings E.npy --fold-into C --out C2.safetensors\n",
     NULL},
    {"tune-p", "choose the GeM exponent p* for a test resolution",
     "usage: multigrain tune-p --checkpoint C --images DIR --max-side S [--out C2.safetensors]\n"
     "\n"
     "Sweeps p on the proxy task (each image against its augmented copies) and reports the best.\n",
     NULL},
    {"retrieval-eval", "Holidays, UKBench, Copydays and list-based retrieval benchmarks",
     "usage: multigrain retrieval-eval --checkpoint C --dataset holidays|ukbench|copydays|list --root DIR\n"
     "                                [--whiten-images DIR] [--max-side S] [--p P]\n",
     NULL},
    {"convert", "convert PyTorch .pth / torchvision weights to a multigrain checkpoint",
     "usage: multigrain convert --from X.pth --to Y.safetensors [--arch resnet50]\n"
     "\n"
     "Reads zip and legacy PyTorch checkpoints with a restricted unpickler (nothing is executed).\n",
     NULL},
    {"report", "write an HTML report with plots of a training run",
     "usage: multigrain report RUN_DIR [--out report.html]\n", NULL},
    {"bench", "measure the speed of ops, models and the data pipeline",
     "usage: multigrain bench ops|model|data [options]\n", NULL},
};
const int mg_command_count = (int)(sizeof mg_commands / sizeof mg_commands[0]);

const mg_command *mg_command_find(const char *name) {
    for (int i = 0; i < mg_command_count; i++)
        if (!strcmp(mg_commands[i].name, name)) return &mg_commands[i];
    return NULL;
}
