// PLACEHOLDER: replaced by the PNG writer.
#include "image.h"
ddx_status ddx_image_grid_write(const char *path, const float *x, int n, int h, int w, int c, int cols,
                                ddx_normalize mode, bool *stretched) {
    (void)path; (void)x; (void)n; (void)h; (void)w; (void)c; (void)cols; (void)mode; (void)stretched;
    return ddx_errorf(DDX_E_UNSUPPORTED, "image: not written yet");
}
ddx_status ddx_image_write(const char *path, const float *x, int h, int w, int c, ddx_normalize mode, bool *stretched) {
    return ddx_image_grid_write(path, x, 1, h, w, c, 1, mode, stretched);
}
