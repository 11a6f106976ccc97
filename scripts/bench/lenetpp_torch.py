#!/usr/bin/python3
"""PyTorch side of scripts/bench/lenetpp.lua, run by it in the same invocation.

The same LeNet++ (three stages of two 5×5 convolutions with 32, 64, 128 channels, padding 2,
PReLU, 2×2 max-pooling; Linear 1152 → 2), a softmax head Linear(2 → 10) with cross-entropy, SGD
(lr 0.01, momentum 0.9, weight decay 5e-4), batch and threads as given, random 28×28 inputs.
One warm-up step, then `steps` timed steps. Prints

    RESULT <wall s/step> <CPU s/step>

Debian python3-torch (/usr/bin/python3), benchmark-only: apt-get install -y python3-torch.
"""
import argparse
import time

import torch
from torch import nn


def lenetpp(dim=2):
    layers, cin = [], 1
    for c in (32, 64, 128):
        layers += [nn.Conv2d(cin, c, 5, padding=2), nn.PReLU(c), nn.Conv2d(c, c, 5, padding=2), nn.PReLU(c),
                   nn.MaxPool2d(2)]
        cin = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 3 * 3, dim))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    net, head = lenetpp(), nn.Linear(2, 10)
    opt = torch.optim.SGD(list(net.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    x = torch.rand(a.batch, 1, 28, 28)
    y = torch.randint(0, 10, (a.batch,))
    lossf = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        lossf(head(net(x)), y).backward()
        opt.step()

    step()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.steps):
        step()
    print("torch %s, %d threads" % (torch.__version__, torch.get_num_threads()))
    print("RESULT %.5f %.5f" % ((time.perf_counter() - w0) / a.steps, (time.process_time() - c0) / a.steps))


if __name__ == "__main__":
    main()
