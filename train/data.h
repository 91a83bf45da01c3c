// Data sets and the batch loader.
//
// A data set is decoded once into memory as u8 [N, S, S, C] at the model's image size
// (S = data.image_size) with i32 labels (0 when the set has none). The loader turns it into
// f32 batches in [-1, 1] in a fixed order that depends only on (seed, batch index): batch k
// belongs to epoch k / B (B = floor(N / batch) batches per epoch, the last partial batch is
// dropped), epoch e is a Fisher-Yates permutation drawn from Philox (seed,
// DDX_RNG_STREAM_DATA, step e), and the horizontal flip of the j-th image of batch k is a
// Philox draw keyed by its position, so a resumed run sees exactly the batches it would have.
// A background thread prepares the next batches while the current step runs.
#ifndef DDX_DATA_H
#define DDX_DATA_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "config/config.h"

typedef struct ddx_dataset {
    int64_t n;          // images
    int size, channels; // S and C
    uint8_t *pixels;    // [n, S, S, C]
    int32_t *labels;    // [n]
    int num_classes;    // 10 for Fashion-MNIST and CIFAR-10; image folders: the sub-folder count (0: none)
    char *class_names;  // num_classes names, each ending in '\n' (NULL when num_classes is 0)
    char desc[256];     // "Fashion-MNIST train, 60000 images 28x28x1 from /usr/share/..."
} ddx_dataset;

// cfg->data: fashion_mnist (train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz under
// data.path, default /usr/share/datasets/fashion-mnist), cifar10 (data_batch_1..5.bin under
// data.path, default data/cifar-10-batches-bin), image_folder (every .png/.jpg/.jpeg under
// data.path, recursively, sorted by path; center crop to square, area resize to S).
// Labels and class names: Fashion-MNIST's ten, CIFAR-10's from batches.meta.txt beside the
// batches (its standard ten when the file is absent), and for an image folder the sorted
// names of data.path's sub-folders, an image's class being the sub-folder it lies under
// (then every image must lie in one; with images at the top level the folder has no classes).
// A missing set is DDX_E_INPUT with one line saying where to get it and where to put it;
// a corrupt file is DDX_E_INPUT naming the file. Sizes other than the native one are resized.
ddx_status ddx_dataset_load(const ddx_config *cfg, ddx_dataset *out);
// The same for a split: test = false is the training set above; test = true the held-out one
// (Fashion-MNIST t10k-images-idx3-ubyte.gz + t10k-labels-idx1-ubyte.gz, CIFAR-10
// test_batch.bin). An image folder has no split: both read data.path.
ddx_status ddx_dataset_load_split(const ddx_config *cfg, bool test, ddx_dataset *out);
void ddx_dataset_free(ddx_dataset *d);

typedef struct ddx_loader ddx_loader;

// Starts the loader at batch index `start_batch` (what a checkpoint stores) with `prefetch`
// batches prepared ahead by a background thread (0 = synchronous).
ddx_status ddx_loader_create(const ddx_dataset *d, int batch, uint64_t seed, bool hflip, int64_t start_batch,
                             int prefetch, ddx_loader **out);
// The next batch: x [batch, S, S, C] f32 in [-1, 1] and y [batch] (either may be NULL).
// *batch_index is the index of the batch returned (the next call returns batch_index + 1).
ddx_status ddx_loader_next(ddx_loader *l, float *x, int32_t *y, int64_t *batch_index);
// Stops the thread and frees everything.
void ddx_loader_free(ddx_loader *l);
// The batch ddx_loader_next would produce for index k, computed directly (tests, resume checks).
ddx_status ddx_loader_batch_at(const ddx_dataset *d, int batch, uint64_t seed, bool hflip, int64_t k, float *x,
                               int32_t *y);

#ifdef __cplusplus
}
#endif

#endif
