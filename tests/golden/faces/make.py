#!/usr/bin/env python3
"""Writes the golden face-data files used by tests/lua/faces_spec.lua (run once, output committed).

    /usr/bin/python3 tests/golden/faces/make.py             # (re)write the files next to this script
    /usr/bin/python3 tests/golden/faces/make.py --check F   # numpy.load F (an .npz/.npy written by
                                                            # fvl.save) and print its arrays

Made with Debian's Python 3 pickle and NumPy. Images are tiny PNGs encoded here with zlib (no
image library needed): image k (0-based) is 6 wide × 4 high, RGB, pixel (y, x) =
((k*40 + x*30) % 256, (y*60 + k) % 256, (x*y*10 + 7*k) % 256).

.bin packs hold the pair (bins, issame): 4 images = 2 pairs, issame = [True, False].
  pack_py2.bin            a pickle laid out as Python 2's cPickle writes it (protocol 2,
                          SHORT_BINSTRING items, BINPUT memo, MARK ... APPENDS); checked here
                          with pickle.loads(..., encoding='bytes') like insightface's loader
  pack_py3_p2.bin         pickle.dumps at protocol 2 from Python 3 (bytes become
                          _codecs.encode(str, 'latin1') calls)
  pack_py3.bin            pickle.dumps at the highest protocol (5: FRAME, MEMOIZE, BINBYTES)
  pack_numpy_p4.bin       items are uint8 numpy arrays of shape (n, 1) as cv2.imencode returns,
                          issame a numpy bool array, protocol 4 (numpy's _reconstruct form)
  pack_numpy_p5.bin       the same at protocol 5 (numpy's _frombuffer form)
  bad_pack_3tuple.bin     a 3-tuple instead of a pair
  bad_pack_odd.bin        3 images for 2 flags
  bad_pack_global.bin     a pickle that names os.system (must be refused, never run)
.npy / .npz:
  u1.npy i8.npy f8.npy b1.npy f4.npy i4.npy i2.npy u2.npy f2.npy  np.save of each default dtype:
                          value k (C order) = dtype-specific formula below, shape (2, 3)
  f8_fortran.npy          a Fortran-order (2, 3) float64 array
  i8_big.npy              an int64 that does not fit in int32 (must be an error)
  arrays.npz              np.savez(a=f4 (2,3), b=i8 (4,), c=u1 (2,2))
  arrays_z.npz            np.savez_compressed of the same
"""
import io
import os
import pickle
import struct
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 6, 4


def pixels(k):
    return [[((k * 40 + x * 30) % 256, (y * 60 + k) % 256, (x * y * 10 + 7 * k) % 256)
             for x in range(W)] for y in range(H)]


def png(k):
    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in pixels(k))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


BINS = [png(k) for k in range(4)]
SAME = [True, False]


def py2_pickle(bins, same):
    """the byte layout of Python 2 cPickle.dumps((bins, same), 2)"""
    out = bytearray(b"\x80\x02")
    memo = 0

    def put():
        nonlocal memo
        out.extend(b"q" + bytes([memo]))
        memo += 1
    out.extend(b"]"); put(); out.extend(b"(")
    for b in bins:
        if len(b) < 256:
            out.extend(b"U" + bytes([len(b)]) + b)
        else:
            out.extend(b"T" + struct.pack("<I", len(b)) + b)
        put()
    out.extend(b"e")
    out.extend(b"]"); put(); out.extend(b"(")
    for s in same:
        out.extend(b"\x88" if s else b"\x89")
    out.extend(b"e")
    out.extend(b"\x86"); put(); out.extend(b".")
    return bytes(out)


def write():
    def save(name, data):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    p2 = py2_pickle(BINS, SAME)
    got = pickle.loads(p2, encoding="bytes")
    assert got == (BINS, SAME), "py2 layout does not read back"
    save("pack_py2.bin", p2)
    save("pack_py3_p2.bin", pickle.dumps((BINS, SAME), protocol=2))
    save("pack_py3.bin", pickle.dumps((BINS, SAME), protocol=pickle.HIGHEST_PROTOCOL))
    arrs = [np.frombuffer(b, dtype=np.uint8).reshape(-1, 1).copy() for b in BINS]
    same = np.array(SAME, dtype=bool)
    save("pack_numpy_p4.bin", pickle.dumps((arrs, same), protocol=4))
    save("pack_numpy_p5.bin", pickle.dumps((arrs, same), protocol=5))
    save("bad_pack_3tuple.bin", pickle.dumps((BINS, SAME, 1), protocol=2))
    save("bad_pack_odd.bin", pickle.dumps((BINS[:3], SAME), protocol=4))
    save("bad_pack_global.bin", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
    shape = (2, 3)
    k = np.arange(6)
    np.save(os.path.join(HERE, "u1.npy"), (k * 50 + 3).astype("|u1").reshape(shape))
    np.save(os.path.join(HERE, "i8.npy"), (k * 1000003 - 2000000).astype("<i8").reshape(shape))
    np.save(os.path.join(HERE, "f8.npy"), (k / 3 - 0.5).astype("<f8").reshape(shape))
    np.save(os.path.join(HERE, "b1.npy"), (k % 2 == 0).reshape(shape))
    np.save(os.path.join(HERE, "f4.npy"), (k * 0.25 - 1).astype("<f4").reshape(shape))
    np.save(os.path.join(HERE, "i4.npy"), (k * 7 - 20).astype("<i4").reshape(shape))
    np.save(os.path.join(HERE, "i2.npy"), (k * 1000 - 3000).astype("<i2").reshape(shape))
    np.save(os.path.join(HERE, "u2.npy"), (k * 10000).astype("<u2").reshape(shape))
    np.save(os.path.join(HERE, "f2.npy"), (k * 0.5 - 1).astype("<f2").reshape(shape))
    np.save(os.path.join(HERE, "f8_fortran.npy"), np.asfortranarray((k / 3 - 0.5).reshape(shape)))
    np.save(os.path.join(HERE, "i8_big.npy"), np.array([1, 2, 3000000000], dtype="<i8"))
    a = (k * 0.25 - 1).astype("<f4").reshape(shape)
    b = np.array([1, -2, 3, 2**31 - 1], dtype="<i8")
    c = np.array([[0, 255], [7, 9]], dtype="|u1")
    np.savez(os.path.join(HERE, "arrays.npz"), a=a, b=b, c=c)
    np.savez_compressed(os.path.join(HERE, "arrays_z.npz"), a=a, b=b, c=c)


def check(path):
    d = np.load(path)
    if isinstance(d, np.ndarray):
        print(d.dtype.str, d.shape, d.ravel().tolist())
        return
    for name in sorted(d.files):
        v = d[name]
        print(name, v.dtype.str, v.shape, v.ravel().tolist())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        write()
