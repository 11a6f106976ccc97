/* sort.h — ordering along one dimension (torch.sort / torch.argsort). */
#ifndef FVL_SORT_H
#define FVL_SORT_H
#include "tensor.h"

/* The permutation that sorts t along dim (0-based): a new contiguous int32 tensor of t's shape
 * holding 0-based positions along dim. Stable: equal values keep their order. NaN sorts as the
 * largest value (last ascending, first descending), as in PyTorch. float32 or int32 input;
 * 0-dim input gives a 0-dim 0. Not tracked (indices); gather the values to follow gradients. */
fvl_tensor *fvl_argsort(fvl_tensor *t, int dim, int descending);

#endif
