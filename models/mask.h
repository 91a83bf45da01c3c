// Inpainting masks: which pixels of an image are kept (the known region) and which the sampler
// fills in. A mask is u8 [h, w], 1 = keep, 0 = fill, the same for every channel.
//
// Kinds (the --mask argument of ddx-inpaint and ddx-mask):
//   box                 a random box per image: height and width uniform in [h/4, h/2] and
//                       [w/4, w/2], position uniform inside the image (fills 1/16 .. 1/4)
//   box:X,Y,BW,BH       the given box (pixels; X, Y its top-left corner) is filled
//   center              the centred box of half the height and width (fills 1/4)
//   half:left|right|top|bottom   that half is filled (the other is kept)
//   strokes             random brush strokes per image: 1 to 3 polylines of 3 to 6 segments,
//                       each segment of length up to max(h, w) / 3 at a random angle, drawn
//                       with a round brush of radius max(1, min(h, w) / 14) .. max(1, min(h, w)
//                       / 8); fills at most 3/4 of the image (strokes past that are not drawn)
//                       and at least one pixel
//   file:PATH           a grey PNG of exactly h x w pixels: white (>= 128) = keep, black (< 128)
//                       = fill. Another size, a colour or alpha PNG, or a file that keeps every
//                       pixel or fills every pixel is refused.
// The random kinds are deterministic: image i of a run with seed s draws from Philox (s,
// DDX_RNG_STREAM_MASK, step i), so a mask depends on (seed, image index) only, never on the
// batch size or the device.
#ifndef DDX_MASK_H
#define DDX_MASK_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "runtime/status.h"

typedef enum ddx_mask_kind {
    DDX_MASK_BOX_RANDOM = 0,
    DDX_MASK_BOX,
    DDX_MASK_CENTER,
    DDX_MASK_HALF,
    DDX_MASK_STROKES,
    DDX_MASK_FILE,
} ddx_mask_kind;

typedef enum ddx_mask_side { DDX_SIDE_LEFT = 0, DDX_SIDE_RIGHT, DDX_SIDE_TOP, DDX_SIDE_BOTTOM } ddx_mask_side;

typedef struct ddx_mask_spec {
    ddx_mask_kind kind;
    int x, y, bw, bh;      // DDX_MASK_BOX
    ddx_mask_side side;    // DDX_MASK_HALF
    const char *path;      // DDX_MASK_FILE (points into the parsed string)
} ddx_mask_spec;

// Parses a kind string (above). DDX_E_INPUT with one line naming `what` on a bad one.
ddx_status ddx_mask_parse(const char *s, const char *what, ddx_mask_spec *out);
// The mask of image `index` for an h x w image: m [h, w] (1 keep, 0 fill). A given box must
// lie inside the image and be non-empty and not the whole image; a file must pass the checks
// above. DDX_E_INPUT with one line naming `what` otherwise.
ddx_status ddx_mask_make(const ddx_mask_spec *s, const char *what, int h, int w, uint64_t seed, int64_t index,
                         uint8_t *m);
// The number of pixels a mask keeps.
int64_t ddx_mask_kept(const uint8_t *m, int h, int w);

#ifdef __cplusplus
}
#endif

#endif
