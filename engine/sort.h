/* sort.h — ordering along one dimension (torch.sort / torch.argsort). */
#ifndef FVL_SORT_H
#define FVL_SORT_H
#include "tensor.h"

/* The permutation that sorts t along dim (0-based): a new contiguous int32 tensor of t's shape
 * holding 0-based positions along dim. Stable: equal values keep their order. NaN sorts as the
 * largest value (last ascending, first descending), as in PyTorch. float32 or int32 input;
 * 0-dim input gives a 0-dim 0. Not tracked (indices); gather the values to follow gradients. */
fvl_tensor *fvl_argsort(fvl_tensor *t, int dim, int descending);

/* Pointers in address order, each with its position in ptrs: out[k] = {ptrs[idx], idx}, sorted by
 * address, then position (O(n log n)); out holds n entries. */
typedef struct { const void *p; int64_t idx; } fvl_ptr_pos;
void fvl_sort_ptrs(const void *const *ptrs, int64_t n, fvl_ptr_pos *out);
/* The first repeat in a list of pointers: the smallest i with ptrs[i] == ptrs[j] for some j < i
 * (j the first position of that pointer, in *earlier); -1 when all differ, -2 (message set) when
 * out of memory. O(n log n): a parameter list of any length is checked without a quadratic scan. */
int64_t fvl_first_repeat(const void *const *ptrs, int64_t n, int64_t *earlier);

#endif
