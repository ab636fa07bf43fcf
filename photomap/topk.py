"""Keep the k largest values of each row while similarity blocks stream past (numba, parallel by row)."""
import numpy as np

numba = None  # imported by merge_kernel(): numba is heavy, and only brute-force neighbours need it
_kernel = None


def merge_kernel():
    """The compiled :func:`_merge` (compiled once per machine, then loaded from numba's disk cache)."""
    global numba, _kernel
    if _kernel is None:
        import numba as _numba

        numba = _numba
        _kernel = numba.njit(parallel=True, cache=True, nogil=True)(_merge)
    return _kernel


def _merge(s, row_ids, col0, k, out_index, out_value):
    """Fold the block ``s`` into each row's best-k lists.

    Row r of ``s`` belongs to photo ``row_ids[r]``, and its column j to photo ``col0 + j``. Row r of
    ``out_index``/``out_value`` (shape ``(rows, k)``, filled with -1 / -inf before the first block)
    holds the best so far, largest value first, equal values by the smaller photo number, so the
    result does not depend on the order the blocks come in. A photo is never its own neighbour, and a
    NaN is never kept."""
    rows, n = s.shape
    for r in numba.prange(rows):
        best_v = out_value[r]
        best_i = out_index[r]
        own = row_ids[r]
        worst_v = best_v[k - 1]
        worst_i = best_i[k - 1]
        for j in range(n):
            v = s[r, j]
            g = col0 + j
            # most columns stop at this test; worst_i is -1 only while the list is still filling
            if not (v > worst_v or (v == worst_v and g < worst_i)) or g == own:
                continue
            p = k - 1
            while p > 0 and (best_v[p - 1] < v or (best_v[p - 1] == v and best_i[p - 1] > g)):
                best_v[p] = best_v[p - 1]
                best_i[p] = best_i[p - 1]
                p -= 1
            best_v[p] = v
            best_i[p] = g
            worst_v = best_v[k - 1]
            worst_i = best_i[k - 1]
