#!/usr/bin/python3
"""Golden values for the warp kernels (engine/data/warp.c through fvl.data.align_face /
resize_image), made once with Debian's python3 + numpy + scipy (1.10):

    /usr/bin/python3 tests/golden/make_align_golden.py   (writes tests/golden/align.json)

- similarity: Umeyama's estimate in its general SVD form (covariance of the centred point sets,
  the sign of the last singular direction flipped when the determinant is negative: no mirror
  image), from 5 noisy landmarks onto the ArcFace template scaled to 56×56 (56/112 = 0.5).
- warp: scipy.ndimage.map_coordinates(order=1, mode="grid-constant", cval=0) at the pre-image of
  every output pixel centre (0-based centres, as OpenCV): bilinear, pixels beyond the edge read 0.
- resize: scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest"): pixel centres aligned
  (x_in = (x_out + 0.5)·W/OW − 0.5), edge pixels repeated; one shrink and one enlargement.
The input image is 3×60×50 of whole numbers 0..255 (float32-exact); values are rounded to 5
decimals in the file.
"""
import json
import os
import numpy as np
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(3)
T112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                 [41.5493, 92.3655], [70.7299, 92.2041]])


def umeyama(src, dst):
    n = len(src)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    cov = d.T @ s / n
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    scale = np.trace(np.diag(sig) @ e) / (s ** 2).sum() * n
    t = md - scale * r @ ms
    return np.hstack([scale * r, t[:, None]])


img = rng.integers(0, 256, size=(3, 60, 50)).astype(np.float64)
tpl = T112 * 0.5
th, sc = 0.35, 0.4
A = sc * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
lm = np.round(tpl @ A.T + np.array([6.0, 4.0]) + rng.normal(0, 0.6, size=(5, 2)), 4)   # 0-based, in the picture
M = umeyama(lm, tpl)                                                     # picture -> crop
Minv = np.linalg.inv(np.vstack([M, [0, 0, 1]]))[:2]
ys, xs = np.mgrid[0:56, 0:56].astype(np.float64)
sx = Minv[0, 0] * xs + Minv[0, 1] * ys + Minv[0, 2]
sy = Minv[1, 0] * xs + Minv[1, 1] * ys + Minv[1, 2]
crop = np.stack([ndimage.map_coordinates(img[c], [sy, sx], order=1, mode="grid-constant", cval=0.0,
                                         prefilter=False) for c in range(3)])


def resize(a, oh, ow):
    return np.stack([ndimage.zoom(a[c], (oh / a.shape[1], ow / a.shape[2]), order=1, grid_mode=True,
                                  mode="nearest", prefilter=False) for c in range(a.shape[0])])


small, big = resize(img, 23, 17), resize(img[:, :20, :16], 47, 33)
assert small.shape == (3, 23, 17) and big.shape == (3, 47, 33)
r5 = lambda a: np.round(a, 5).tolist()
out = {"image": img.astype(int).tolist(), "landmarks": r5(lm), "template56": r5(tpl), "matrix": M.tolist(),
       "crop": r5(crop), "small": r5(small), "big": r5(big)}
with open(os.path.join(HERE, "align.json"), "w") as f:
    json.dump(out, f, separators=(",", ":"))
print("align.json written")
