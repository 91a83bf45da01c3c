// PNG output: sample grids and single images (stb_image_write), written atomically.
#ifndef DDX_IMAGE_H
#define DDX_IMAGE_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

typedef enum ddx_normalize {
    DDX_NORMALIZE_CLIP = 0,  // (x + 1) / 2 clipped to [0, 1]
    DDX_NORMALIZE_AUTO,      // like clip, unless the observed range is far from [-1, 1]: then stretch min..max to 0..1
} ddx_normalize;

// x: host f32 [n, h, w, c] (c = 1 or 3). Writes an 8-bit PNG (grey or RGB) of the n images in
// a grid of `cols` columns (0 = ceil(sqrt(n))) with a 2-pixel border, via a temp file and
// rename. *stretched (may be NULL) says whether `auto` stretched the range.
ddx_status ddx_image_grid_write(const char *path, const float *x, int n, int h, int w, int c, int cols,
                                ddx_normalize mode, bool *stretched);
// One image [h, w, c] the same way.
ddx_status ddx_image_write(const char *path, const float *x, int h, int w, int c, ddx_normalize mode, bool *stretched);

#ifdef __cplusplus
}
#endif

#endif
