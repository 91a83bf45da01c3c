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

// PNG input (stb_image, via ddx_input_open): the file must be exactly h x w pixels with c
// channels (1: grey, 3: RGB; an alpha channel or another count is refused, as is another size)
// -- checked from the header before anything is decoded, so memory is bounded by the caller's
// h, w, c, never by what the file claims. out: [h, w, c] 8-bit values. what: the flag or kind
// of file for the one-line DDX_E_INPUT message.
ddx_status ddx_image_read_u8(const char *path, const char *what, int h, int w, int c, uint8_t *out);

#ifdef __cplusplus
}
#endif

#endif
