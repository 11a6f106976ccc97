/* group_max_ws.h — the max over groups of K columns with one B×(C·K) workspace (Sub-center
 * ArcFace's max over its K sub-centres), for training steps that keep the logits plus one
 * gradient buffer, like the single-centre heads. */
#ifndef FVL_GROUP_MAX_WS_H
#define FVL_GROUP_MAX_WS_H
#include "tensor.h"

/* out_ij = max_k cos[i, j·K + k] (B×C from cos B×(C·K)), tracked: the gradient goes to the
 * arg-max column only (ties: the first, as torch.argmax).
 *
 * gws (optional, contiguous float32 B×(C·K), not sharing cos's storage) is the one workspace:
 * when it is free, `out` is a B×C view of its first B·C floats, and the backward, which runs
 * only after every consumer of `out` has run its own, writes the B×(C·K) gradient over it and
 * hands it to cos's node without a copy. So the op keeps no B×C buffer of its own: no arg-max
 * index either, it is recomputed from cos (kept by the cosine's graph anyway) in the backward.
 * gws is free when no tensor but gws shares its storage, or when the only other one is `prev`,
 * this function's previous output on gws, and the graph of prev is finished (its backward ran)
 * or was never recorded. Otherwise out and the gradient are fresh tensors (still correct).
 * gws may also be B×C: then it holds `out` only, and a backward that runs allocates its gradient
 * (the fused class blocks need none: a margin CE of `out` is formed in the cosine's backward).
 * Like every workspace, the values of `out` are overwritten by its backward and by the next
 * call that reuses gws. */
fvl_tensor *fvl_group_max_ws(fvl_tensor *cos, int64_t K, fvl_tensor *gws, fvl_tensor *prev);
#endif
