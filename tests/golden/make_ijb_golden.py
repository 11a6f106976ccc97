#!/usr/bin/python3
"""Golden values for the IJB 1:1 protocol (lua/fvl/ijb.lua), made once with Debian's python3 +
numpy + python3-sklearn (1.2.1):

    /usr/bin/python3 tests/golden/make_ijb_golden.py   (writes tests/golden/ijb.json)

- pooling: 200 image features (D = 4) in 30 templates of 1..4 media each; each variant (plain,
  N1 = image features kept unnormalised, D1 = times the detector score, both) pools as the
  protocol says: image features normalised (unless N1), times the score (D1), the mean of each
  media summed over the template, L2-normalised; templates in increasing id order (numpy.unique).
- TAR reading: 2,000 pair scores rounded to 3 decimals (many ties) with labels; the ROC is
  sklearn.metrics.roc_curve's (drop_intermediate=True, its default), flipped, and each target
  FAR takes numpy.argmin(|fpr - target|) in the flipped curve (the first of equals there, i.e.
  the higher TAR); targets whose two nearest FARs are within 1e-6 of a tie are left out (float32
  rounding could pick either). AUC: sklearn.metrics.auc on the same curve. The scores are
  float32-exact so both sides see the same values.
"""
import json
import os
import numpy as np
from sklearn.metrics import auc, roc_curve

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(11)


def pool(feats, tids, mids, scores=None, norm=True):
    f = feats.astype(np.float64)
    if norm:
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
    if scores is not None:
        f = f * scores[:, None]
    ids = np.unique(tids)
    out = np.zeros((len(ids), f.shape[1]))
    for k, t in enumerate(ids):
        sel = tids == t
        ft, mt = f[sel], mids[sel]
        for m in np.unique(mt):
            out[k] += ft[mt == m].mean(axis=0)
    return ids, out / np.linalg.norm(out, axis=1, keepdims=True)


N, D, T = 200, 4, 30
tids = rng.integers(0, T, N) * 7 + 3          # ids with gaps, not sorted
mids = tids * 10 + rng.integers(0, 3, N)      # 1..3 media per template
feats = rng.normal(size=(N, D)).astype(np.float32) * rng.uniform(0.5, 3, size=(N, 1)).astype(np.float32)
dscore = rng.uniform(0.3, 1.0, N).astype(np.float32)
variants = {}
for name, kw in {"plain": {}, "n1": {"norm": False}, "d1": {"scores": dscore},
                 "d1n1": {"scores": dscore, "norm": False}}.items():
    ids, tf = pool(feats, tids, mids, **kw)
    variants[name] = tf.tolist()

P = 2000
labels = (rng.random(P) < 0.2).astype(np.int64)
raw = np.where(labels == 1, rng.normal(0.45, 0.2, P), rng.normal(0.0, 0.2, P))
scores = np.round(np.clip(raw, -1, 1), 3).astype(np.float32)
fpr, tpr, _ = roc_curve(labels, scores.astype(np.float64))
ff, tf_ = np.flipud(fpr), np.flipud(tpr)
targets, tars, used = [], [], []
for t in np.concatenate([10.0 ** np.linspace(-4, -0.05, 40), [1e-6, 1e-5, 1e-3, 1e-2, 1e-1]]):
    d = np.abs(ff - t)
    i = int(np.argmin(d))
    others = d[np.abs(ff - ff[i]) > 0]
    if len(others) and others.min() - d[i] < 1e-6:
        continue
    targets.append(float(t))
    tars.append(float(tf_[i]))
    used.append(float(ff[i]))

out = {
    "pool": {"features": feats.tolist(), "templates": tids.tolist(), "medias": mids.tolist(),
             "detector": dscore.tolist(), "ids": ids.tolist(), "expected": variants},
    "tar": {"scores": scores.tolist(), "labels": labels.tolist(), "fars": targets, "tar": tars,
            "far_used": used, "auc": float(auc(fpr, tpr)), "corners": len(fpr)},
}
with open(os.path.join(HERE, "ijb.json"), "w") as f:
    json.dump(out, f, separators=(",", ":"))
print("ijb.json:", len(targets), "FAR targets,", len(fpr), "ROC corners")
