/* plot_gif.h — inside the plot module only: the GIF encoder's frame entry point, shared by
 * plot.c (charts, scatter) and plot_gif.c (the encoder). Not part of the engine's API. */
#ifndef FVL_PLOT_GIF_H
#define FVL_PLOT_GIF_H
#include <cairo.h>
#include "plot.h"

/* draws one figure of w×h user units on cr; -1 + message on failure */
typedef int (*fvl_plot_draw_fn)(cairo_t *cr, double w, double h, const void *ud);
/* renders draw(ud) into g's frame buffer and appends it as the next frame */
int fvl_plot_gif_add_drawn(fvl_plot_gif *g, fvl_plot_draw_fn draw, const void *ud);
/* the extension of path without the dot ("" when none): "gif", "png", "pdf", "svg" */
const char *fvl_plot_ext_of(const char *path);
#endif
