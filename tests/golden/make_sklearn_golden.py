#!/usr/bin/python3
"""Golden values for engine/eval.c, made once with Debian's python3 + python3-sklearn.

    /usr/bin/python3 tests/golden/make_sklearn_golden.py   (writes tests/golden/sklearn_*.json)

- ROC / AUC: sklearn.metrics.roc_curve (drop_intermediate False and True) and auc.
- TAR@FAR=f (f = 1e-1..1e-6): max tpr over the sklearn ROC points with fpr <= f, only where
  #impostors >= 1/f (else null).
- EER: crossing of the piecewise-linear sklearn ROC with fpr = 1 - tpr.
- 10-fold accuracy: sklearn KFold(10, shuffle=False) folds; per fold the threshold maximising
  training accuracy among the distinct training scores (plus "nothing is same"), ties -> the
  highest threshold; brute force with numpy.
- VAL@FAR (LFW protocol): per fold, the threshold where the training folds' FAR = f by linear
  interpolation between the bracketing distinct training scores; TAR/FAR on the held-out fold.
- Identification: brute-force numpy ranking (cosine descending, gallery index ascending) with
  pytorch-metric-learning's precision@1, R-precision and MAP@R definitions.
Scores are float32; sklearn sees the same float32 values the C tests parse with strtof.
"""
import json
import os
import numpy as np
import sklearn
from sklearn.metrics import roc_curve, auc
from sklearn.model_selection import KFold

HERE = os.path.dirname(os.path.abspath(__file__))
FARS = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


def eer_of(fpr, tpr):
    g = 1.0 - fpr - tpr
    i = int(np.argmax(g <= 0))
    t = g[i - 1] / (g[i - 1] - g[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tar_at_far(fpr, tpr, nneg):
    out = []
    for f in FARS:
        if nneg * f < 1.0 - 1e-9:
            out.append(None)
        else:
            out.append(float(tpr[fpr <= f * (1 + 1e-12)].max()))
    return out


def kfold(scores, same, folds=10):
    accs, thrs = [], []
    for train, test in KFold(n_splits=folds, shuffle=False).split(scores):
        s, y = scores[train], same[train]
        cand = np.unique(s)[::-1]                      # descending distinct training scores
        top = np.nextafter(np.float32(cand[0]), np.float32(np.inf))
        cand = np.concatenate([[top], cand]).astype(np.float32)
        pred = s[None, :] >= cand[:, None]
        acc = (pred == (y[None, :] == 1)).mean(axis=1)
        k = int(np.argmax(acc))                        # first max = highest threshold
        t = cand[k]
        accs.append(float(((scores[test] >= t) == (same[test] == 1)).mean()))
        thrs.append(float(t))
    accs = np.array(accs)
    return float(accs.mean()), float(accs.std()), float(np.mean(thrs)), accs.tolist(), thrs


def val_at_far(scores, same, folds=10):
    """VAL@FAR per fold: threshold where the training folds' FAR = f (linear interpolation
    between the bracketing distinct training scores), TAR/FAR on the held-out fold."""
    splits = list(KFold(n_splits=folds, shuffle=False).split(scores))
    min_neg = min(int((same[tr] == 0).sum()) for tr, _ in splits)
    val, val_std, val_far = [], [], []
    for f in FARS:
        if min_neg * f < 1 - 1e-9:
            val.append(None); val_std.append(None); val_far.append(None)
            continue
        tars, fars = [], []
        for tr, te in splits:
            s, y = scores[tr], same[tr]
            thr = np.unique(s)[::-1]
            neg = np.sort(s[y == 0].astype(np.float64))
            far = (len(neg) - np.searchsorted(neg, thr.astype(np.float64), side="left")) / len(neg)
            ok = np.nonzero(far <= f)[0]
            if len(ok) == 0:
                t = float(np.nextafter(np.float32(thr[0]), np.float32(np.inf)))
            else:
                i = int(ok[-1])
                t = float(thr[i]) + (f - far[i]) / (far[i + 1] - far[i]) * (float(thr[i + 1]) - float(thr[i]))
            ts, ty = scores[te].astype(np.float64), same[te]
            if (ty == 1).sum() == 0 or (ty == 0).sum() == 0:
                continue
            tars.append(((ts >= t) & (ty == 1)).sum() / (ty == 1).sum())
            fars.append(((ts >= t) & (ty == 0)).sum() / (ty == 0).sum())
        val.append(float(np.mean(tars))); val_std.append(float(np.std(tars))); val_far.append(float(np.mean(fars)))
    return val, val_std, val_far


def roc_case(name, scores, same, full=True):
    scores = np.asarray(scores, dtype=np.float32)
    same = np.asarray(same, dtype=np.int32)
    fpr, tpr, thr = roc_curve(same, scores, drop_intermediate=False)
    fpr_d, tpr_d, thr_d = roc_curve(same, scores, drop_intermediate=True)
    nneg = int((same == 0).sum())
    case = {
        "name": name, "sklearn": sklearn.__version__,
        "n": int(len(scores)), "n_genuine": int(same.sum()), "n_impostor": nneg,
        "scores": [float(np.float64(v)) for v in scores], "same": same.tolist(),
        "auc": float(auc(fpr, tpr)), "auc_drop": float(auc(fpr_d, tpr_d)),
        "eer": eer_of(fpr, tpr), "tar_at_far": tar_at_far(fpr, tpr, nneg),
        "fpr_drop": fpr_d.tolist(), "tpr_drop": tpr_d.tolist(),
        "thresholds_drop": [float(v) for v in thr_d[1:]],
        "n_roc": int(len(fpr)),
    }
    if full:
        case.update({"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [float(v) for v in thr[1:]]})
    if len(scores) >= 10:
        m, sd, mt, accs, thrs = kfold(scores, same)
        case.update({"kfold_acc": m, "kfold_std": sd, "kfold_thr": mt, "kfold_fold_acc": accs,
                     "kfold_fold_thr": thrs})
        v, vs, vf = val_at_far(scores, same)
        case.update({"val": v, "val_std": vs, "val_far": vf})
    return case


def ident_case(name, rng, G, P, D, C, loo, absent):
    while True:
        gl = rng.integers(0, C, G)
        g = rng.normal(size=(G, D)) + 0.9 * np.eye(C, D)[gl % D] * 2
        gn = g / np.linalg.norm(g, axis=1, keepdims=True)
        if loo:
            p, pl, pn = g, gl, gn
        else:
            pl = rng.integers(0, C + absent, P)
            p = rng.normal(size=(P, D)) + 0.9 * np.eye(C + absent, D)[pl % D] * 2
            pn = p / np.linalg.norm(p, axis=1, keepdims=True)
        g = g.astype(np.float32); p = p.astype(np.float32)
        S = pn @ gn.T
        ok = True
        for q, row in enumerate(S):  # no near-tie between a relevant and an irrelevant item,
            o = np.argsort(-row)     # so float32 GEMM in C ranks them the same way
            rel = gl[o] == pl[q]
            gap = -np.diff(row[o])
            if np.any((gap < 1e-6) & (rel[1:] != rel[:-1])):
                ok = False
                break
        if ok:
            break
    ks = [1, 5, 10]
    n_q = n_drop = 0
    p1 = rp = mapr = 0.0
    hits = [0] * len(ks)
    for q in range(len(p)):
        s = S[q].copy()
        idx = np.arange(G)
        if loo:
            keep = idx != q
            s, idx = s[keep], idx[keep]
        order = idx[np.lexsort((idx, -s))]
        rel = (gl[order] == pl[q]).astype(np.float64)
        R = int(rel.sum())
        if R == 0:
            n_drop += 1
            continue
        n_q += 1
        p1 += rel[0]
        rp += rel[:R].sum() / R
        prec = np.cumsum(rel[:R]) / np.arange(1, R + 1)
        mapr += (prec * rel[:R]).sum() / R
        first = int(np.argmax(rel > 0))
        for j, k in enumerate(ks):
            hits[j] += first < k
    return {
        "name": name, "G": G, "P": len(p), "D": D, "loo": loo,
        "gallery": [float(v) for v in g.ravel()], "gallery_labels": gl.tolist(),
        "probes": [] if loo else [float(v) for v in p.ravel()],
        "probe_labels": [] if loo else pl.tolist(),
        "ks": ks, "rank_k": [h / n_q for h in hits], "n_queries": n_q, "n_dropped": n_drop,
        "precision_at_1": p1 / n_q, "r_precision": rp / n_q, "map_at_r": mapr / n_q,
    }


def write(name, obj):
    path = os.path.join(HERE, "sklearn_%s.json" % name)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


def main():
    rng = np.random.default_rng(20261127)
    cases = []
    # hand case (also worked by hand in tests/engine/test_eval.c)
    cases.append(roc_case("hand", [0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2, 0.1],
                          [1, 1, 0, 1, 1, 0, 0, 1, 0, 0]))
    # heavy ties
    n = 200
    same = rng.integers(0, 2, n)
    s = np.round(np.where(same == 1, rng.normal(0.4, 0.3, n), rng.normal(0.0, 0.3, n)), 1)
    cases.append(roc_case("ties", np.clip(s, -1, 1), same))
    # large, 2000 genuine / 10000 impostor, scores on a 1e-3 grid: supports FAR down to 1e-4
    same = np.r_[np.ones(2000, int), np.zeros(10000, int)]
    rng.shuffle(same)
    s = np.where(same == 1, rng.normal(0.5, 0.15, len(same)), rng.normal(0.05, 0.1, len(same)))
    cases.append(roc_case("large", np.clip(np.round(s, 3), -1, 1), same))
    write("roc", {"cases": cases})

    # LFW-like: 6000 pairs, genuine/impostor alternating, continuous float32 scores
    same = np.tile([1, 0], 3000)
    s = np.where(same == 1, rng.normal(0.45, 0.2, 6000), rng.normal(0.0, 0.15, 6000))
    write("lfw", {"cases": [roc_case("lfw", np.clip(s, -1, 1), same, full=False)]})

    write("ident", {"cases": [
        ident_case("probes", rng, G=200, P=120, D=8, C=25, loo=False, absent=3),
        ident_case("loo", rng, G=150, P=150, D=8, C=15, loo=True, absent=0),
    ]})


if __name__ == "__main__":
    main()
