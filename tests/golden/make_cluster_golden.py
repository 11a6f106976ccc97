#!/usr/bin/python3
"""Golden values for engine/cluster.c (NMI, AMI, expected mutual information, k-means), made
once with Debian's python3 + python3-sklearn (1.2.1) + numpy:

    /usr/bin/python3 tests/golden/make_cluster_golden.py   (writes tests/golden/sklearn_cluster.json)

- mutual information: sklearn.metrics.mutual_info_score; entropies from the label counts
  (natural log); NMI: normalized_mutual_info_score (average_method="arithmetic", the default);
  AMI: adjusted_mutual_info_score (arithmetic); E[I]:
  sklearn.metrics.cluster._expected_mutual_info_fast.expected_mutual_information on the
  contingency matrix (the hypergeometric expectation the AMI uses).
- Each case gives its labels either as lists (a, b) or as a formula both sides evaluate in
  integers, for i = 0..n-1:  a[i] = (i*pa + i//da) % ma + 1,  b[i] = (i*pb + i//db) % mb + 1
  (so the large cases need no big file).
- k-means: sklearn.cluster.KMeans(k, n_init=10, random_state=0) on well-separated blobs: the
  inertia and the partition (labels + 1) of the optimum, which any correct k-means finds.
"""
import json
import os
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import (adjusted_mutual_info_score, mutual_info_score,
                             normalized_mutual_info_score)
from sklearn.metrics.cluster import contingency_matrix
from sklearn.metrics.cluster._expected_mutual_info_fast import expected_mutual_information

HERE = os.path.dirname(os.path.abspath(__file__))


def entropy(x):
    _, c = np.unique(x, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def formula(n, p, d, m):
    i = np.arange(n, dtype=np.int64)
    return (i * p + i // d) % m + 1


def scores(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return {
        "mi": float(mutual_info_score(a, b)),
        "h_a": entropy(a), "h_b": entropy(b),
        "nmi": float(normalized_mutual_info_score(a, b)),
        "ami": float(adjusted_mutual_info_score(a, b)),
        "emi": float(expected_mutual_information(contingency_matrix(a, b), len(a))),
        "ka": int(len(np.unique(a))), "kb": int(len(np.unique(b))),
    }


def main():
    rng = np.random.default_rng(20261205)
    cases = []

    def listed(name, a, b):
        c = {"name": name, "a": [int(v) for v in a], "b": [int(v) for v in b]}
        c.update(scores(a, b))
        cases.append(c)

    def formulaic(name, n, pa, da, ma, pb, db, mb):
        a, b = formula(n, pa, da, ma), formula(n, pb, db, mb)
        c = {"name": name, "n": n, "pa": pa, "da": da, "ma": ma, "pb": pb, "db": db, "mb": mb}
        c.update(scores(a, b))
        cases.append(c)

    listed("tiny_3x3", [1, 1, 2, 2, 3, 3], [1, 1, 2, 3, 3, 3])
    listed("independent_2x2", [1, 1, 2, 2], [1, 2, 1, 2])
    listed("identical_renamed", [1, 1, 2, 3, 3, 3, 4], [7, 7, 3, 9, 9, 9, 1])
    listed("one_cluster_each", [2, 2, 2, 2, 2], [5, 5, 5, 5, 5])
    listed("one_vs_many", [1, 1, 1, 1, 1, 1], [1, 2, 3, 1, 2, 3])
    listed("all_singletons_vs_two", [1, 2, 3, 4, 5, 6, 7, 8], [1, 1, 1, 1, 2, 2, 2, 2])
    listed("single_row", [4], [9])
    for n, ka, kb in [(40, 4, 5), (200, 10, 8), (300, 30, 40), (300, 2, 150)]:
        a = rng.integers(1, ka + 1, n)
        b = np.where(rng.random(n) < 0.6, a % kb + 1, rng.integers(1, kb + 1, n))
        listed("random_n%d_%dx%d" % (n, ka, kb), a, b)
    # imbalanced sizes
    a = np.concatenate([np.full(150, 1), np.full(30, 2), np.full(15, 3), np.full(5, 4)])
    b = a.copy()
    b[::7] = 5
    listed("imbalanced_200", a, b)
    formulaic("many_classes_2000", 2000, 7, 1, 400, 13, 3, 380)
    formulaic("large_n_200k", 200000, 7919, 1000, 97, 104729, 700, 113)
    formulaic("large_n_1m_few", 1000000, 3, 100000, 7, 5, 250000, 11)

    # k-means on separable blobs: 4 blobs of 15 points in 3-D, spread 0.05 around centres 10 apart
    centres = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=np.float32)
    truth = np.repeat(np.arange(4), 15)
    x = (centres[truth] + rng.normal(0, 0.05, (60, 3))).astype(np.float32)
    perm = rng.permutation(60)
    x, truth = x[perm], truth[perm]
    km = KMeans(4, n_init=10, random_state=0).fit(x.astype(np.float64))
    kmeans = {"name": "blobs_4x15", "x": [[float(v) for v in r] for r in x], "k": 4,
              "truth": [int(v) + 1 for v in truth], "sklearn_labels": [int(v) + 1 for v in km.labels_],
              "inertia": float(km.inertia_)}

    out = {"sklearn": __import__("sklearn").__version__, "cases": cases, "kmeans": [kmeans]}
    with open(os.path.join(HERE, "sklearn_cluster.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    for c in cases:
        print("%-24s nmi %.15g ami %.15g emi %.15g" % (c["name"], c["nmi"], c["ami"], c["emi"]))


if __name__ == "__main__":
    main()
