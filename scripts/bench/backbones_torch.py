#!/usr/bin/python3
"""PyTorch side of scripts/bench/backbones.lua: the same backbones, batch and threads.

Run by backbones.lua in the same invocation (Debian python3-torch, /usr/bin/python3; install it
for benchmarks with `apt-get install -y python3-torch`). One forward + backward step of
IResNet-18/50 or MobileFaceNet on a B×3×112×112 batch with L = Σ y·r (r fixed), timed like the
Lua side: one warm-up step, then `steps` timed steps; prints per network

    RESULT <name> <best wall s/step> <best CPU s/step> <peak RSS MB>

The networks are insightface's definitions (tests/golden/make_backbones.py builds them).
"""
import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden"))
import make_backbones as mb  # noqa: E402


def build(name):
    if name.startswith("iresnet"):
        depth = int(name[len("iresnet"):])
        blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}[depth]
        net = mb.IResNet(blocks)
        return lambda x: net(x, []), net
    if name == "mobilefacenet":
        net = mb.MobileFaceNet(512)
        return lambda x: net(x, []), net
    raise SystemExit("backbones_torch.py: unknown network " + name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", default="iresnet18,iresnet50,mobilefacenet")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    print("torch %s, %d threads, oneDNN %s" % (torch.__version__, torch.get_num_threads(),
                                               torch.backends.mkldnn.is_available()), flush=True)
    for name in a.nets.split(","):
        fwd, net = build(name)
        net.train()
        x = torch.randn(a.batch, 3, 112, 112)
        r = torch.randn(a.batch, 512)
        def step():
            net.zero_grad(set_to_none=True)
            (fwd(x) * r).sum().backward()
        step()
        wall, cpu = [], []
        for _ in range(a.steps):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print("RESULT %s %.4f %.4f %.1f" % (name, min(wall), min(cpu), rss), flush=True)
        del net, fwd


if __name__ == "__main__":
    main()
