#!/usr/bin/python3
"""PyTorch side of scripts/bench/heads.lua: the same heads, shapes and threads.

Run by heads.lua in the same invocation (Debian python3-torch, /usr/bin/python3; install it for
benchmarks with `apt-get install -y python3-torch`). A training step as a PyTorch user writes it
on the CPU: gradients set to None (`zero_grad(set_to_none=True)`, the default), then
F.normalize + F.linear (cosines), the margin on the B target entries, F.cross_entropy, and
backward to x and W. One warm-up step, then the best of `steps` timed steps; prints per head

    RESULT <name> <C> <best ms/step>

Heads: softmax (x·Wᵀ + b), normface (s = 64), cosface (s = 64, m = 0.35), arcface (s = 64,
m = 0.5, the "mm" fallback cos θ − m·sin m where θ + m > π) and combined (s = 64, m1 = 1,
m2 = 0.3, m3 = 0.2, no fallback): the defaults of fvl.loss.
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def cosines(x, w):
    return F.linear(F.normalize(x), F.normalize(w)).clamp(-1, 1)


def with_target(cos, y, t):
    return cos.scatter(1, y[:, None], t[:, None])


def arc_target(c, m):
    sin = (1 - c * c).clamp(0, 1).sqrt()
    arc = c * math.cos(m) - sin * math.sin(m)
    return torch.where(c > math.cos(math.pi - m), arc, c - m * math.sin(m))


def make(name, x, y, C):
    D = x.shape[1]
    w = (torch.randn(C, D) * math.sqrt(2.0 / (C + D))).requires_grad_()
    if name == "softmax":
        b = torch.zeros(C, requires_grad=True)
        return [w, b], lambda: F.cross_entropy(F.linear(x, w, b), y)
    if name == "normface":
        return [w], lambda: F.cross_entropy(64 * cosines(x, w), y)

    def margin(fn):
        def loss():
            cos = cosines(x, w)
            c = cos.gather(1, y[:, None])[:, 0]
            return F.cross_entropy(64 * with_target(cos, y, fn(c)), y)
        return loss
    if name == "cosface":
        return [w], margin(lambda c: c - 0.35)
    if name == "arcface":
        return [w], margin(lambda c: arc_target(c, 0.5))
    if name == "combined":
        return [w], margin(lambda c: torch.cos(torch.acos(c.clamp(-1, 1)) + 0.3) - 0.2)
    return None, None


def main():
    ap = argparse.ArgumentParser(description="PyTorch side of scripts/bench/heads.lua")
    ap.add_argument("--heads", default="softmax,normface,cosface,arcface,combined")
    ap.add_argument("--C", type=int, default=100000)
    ap.add_argument("--B", type=int, default=256)
    ap.add_argument("--D", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print("torch %s, %d threads" % (torch.__version__, torch.get_num_threads()), flush=True)
    for name in a.heads.split(","):
        torch.manual_seed(1)
        x = torch.randn(a.B, a.D, requires_grad=True)
        y = torch.randint(0, a.C, (a.B,))
        params, loss = make(name, x, y, a.C)
        if params is None:
            print("SKIP %s %d (no PyTorch version in heads_torch.py)" % (name, a.C), flush=True)
            continue
        opt = torch.optim.SGD(params, lr=0.1)

        def step():
            t0 = time.perf_counter()
            x.grad = None
            opt.zero_grad(set_to_none=True)
            loss().backward()
            return time.perf_counter() - t0
        step()
        best = min(step() for _ in range(a.steps))
        print("RESULT %s %d %.3f" % (name, a.C, best * 1e3), flush=True)
        del params, loss, opt


if __name__ == "__main__":
    main()
