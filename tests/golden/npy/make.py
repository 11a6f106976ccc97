#!/usr/bin/env python3
"""Writes the golden .npy files used by tests/engine/test_npy_rng.c (run once, output committed).

    /usr/bin/python3 tests/golden/npy/make.py            # (re)write the files next to this script
    /usr/bin/python3 tests/golden/npy/make.py --check D  # numpy.load every ours_*.npy in D and
                                                         # compare with the golden values

Values are chosen so the C test can rebuild them exactly: element k (C order) of a float file is
(k - 3) / 4 + 1/3 rounded to float32, of an int file is k * 7 - 20.
"""
import os
import sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def fvals(shape):
    n = int(np.prod(shape)) if shape else 1
    k = np.arange(n, dtype=np.float64)
    return ((k - 3) / 4 + 1.0 / 3).astype(np.float32).reshape(shape)


def ivals(shape):
    n = int(np.prod(shape)) if shape else 1
    return (np.arange(n, dtype=np.int64) * 7 - 20).astype(np.int32).reshape(shape)


GOOD = {
    "f4_0d": fvals(()),
    "f4_1d": fvals((5,)),
    "f4_2d": fvals((2, 3)),
    "f4_3d": fvals((2, 3, 4)),
    "f4_empty": fvals((0, 3)),
    "i4_0d": ivals(()),
    "i4_1d": ivals((7,)),
    "i4_2d": ivals((3, 2)),
    "i4_3d": ivals((2, 2, 3)),
}


def write():
    for name, a in GOOD.items():
        np.save(os.path.join(HERE, name + ".npy"), a)
    # foreign or damaged files: each must give an error, never a crash
    np.save(os.path.join(HERE, "bad_f8.npy"), np.arange(6, dtype="<f8").reshape(2, 3))
    np.save(os.path.join(HERE, "bad_bigendian.npy"), np.arange(4, dtype=">f4"))
    np.save(os.path.join(HERE, "bad_fortran.npy"), np.asfortranarray(fvals((2, 3))))
    np.save(os.path.join(HERE, "bad_u1.npy"), np.arange(4, dtype="u1"))
    with open(os.path.join(HERE, "f4_2d.npy"), "rb") as f:
        whole = f.read()
    with open(os.path.join(HERE, "bad_truncated_data.npy"), "wb") as f:
        f.write(whole[:-5])                      # header intact, last 5 data bytes missing
    with open(os.path.join(HERE, "bad_truncated_header.npy"), "wb") as f:
        f.write(whole[:30])                      # stops inside the header
    with open(os.path.join(HERE, "bad_magic.npy"), "wb") as f:
        f.write(b"\x93NUMPZ" + whole[6:])
    with open(os.path.join(HERE, "bad_tiny.npy"), "wb") as f:
        f.write(b"\x93NU")                       # shorter than the magic
    # format version 2.0 (4-byte header length), as numpy writes for very long headers
    with open(os.path.join(HERE, "f4_v2.npy"), "wb") as f:
        np.lib.format.write_array(f, fvals((3, 2)), version=(2, 0))
    # a header that promises 4 GB followed by 24 bytes: an error, without reading past the end
    with open(os.path.join(HERE, "bad_huge_shape.npy"), "wb") as f:
        hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000), }"
        hdr += " " * (64 - 10 - len(hdr) - 1) + "\n"
        f.write(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode() + bytes(24))
    with open(os.path.join(HERE, "bad_shape.npy"), "wb") as f:
        hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }"
        hdr += " " * (64 - 10 - len(hdr) - 1) + "\n"
        f.write(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode() + bytes(24))


def check(d):
    bad = 0
    for name, a in GOOD.items():
        p = os.path.join(d, "ours_" + name + ".npy")
        if not os.path.exists(p):
            continue
        b = np.load(p)
        if b.dtype != a.dtype or b.shape != a.shape or not np.array_equal(a, b):
            print("MISMATCH", p, b.dtype, b.shape)
            bad += 1
        else:
            print("ok", p)
    return bad


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(1 if check(sys.argv[2]) else 0)
    write()
