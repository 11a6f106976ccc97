#!/usr/bin/python3
"""Golden structure of the face backbones, computed by PyTorch (Debian python3-torch).

Builds IResNet-18/34/50/100/200 and MobileFaceNet (scale 1 with dim 512 and 128, scale 2) from
their definitions in insightface's arcface_torch (backbones/iresnet.py, mobilefacenet.py) as
torch.nn modules written here, and writes tests/golden/backbones.json: parameter counts
(trainable, and all including the fixed feature-BN weight), the sorted list of parameter shapes,
the number of running-statistic values, the output shape of each stage for a 2×3×112×112 input
and the FLOPs per image (2 × multiply-adds of every Conv2d and Linear, counted by forward hooks).
tests/lua/backbones_spec.lua checks fvl.nn.iresnet / fvl.nn.mobilefacenet against it.

    /usr/bin/python3 tests/golden/make_backbones.py > tests/golden/backbones.json
"""
import json
import sys

import torch
from torch import nn


def conv(cin, cout, k, stride=1, pad=0, groups=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=False)


class IBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = conv(cin, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = conv(cout, cout, 3, stride, 1)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x):
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    def __init__(self, blocks, dim=512):
        super().__init__()
        self.conv1 = conv(3, 64, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        self.stages = nn.ModuleList()
        for width, n in zip((64, 128, 256, 512), blocks):
            layers = []
            for i in range(n):
                layers.append(IBlock(cin, width, 2 if i == 0 else 1))
                cin = width
            self.stages.append(nn.Sequential(*layers))
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, dim)
        self.features = nn.BatchNorm1d(dim, eps=1e-5)
        self.features.weight.requires_grad = False

    def forward(self, x, shapes):
        x = self.prelu(self.bn1(self.conv1(x)))
        for s in self.stages:
            x = s(x)
            shapes.append(list(x.shape))
        x = self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))
        shapes.append(list(x.shape))
        return x


def block(cin, cout, k, stride=1, pad=0, groups=1, act=True):
    mods = [conv(cin, cout, k, stride, pad, groups), nn.BatchNorm2d(cout)]
    if act:
        mods.append(nn.PReLU(cout))
    return nn.Sequential(*mods)


class DW(nn.Module):
    def __init__(self, cin, cout, stride, g, residual=False):
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(block(cin, g, 1), block(g, g, 3, stride, 1, g), block(g, cout, 1, act=False))

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    def __init__(self, dim=512, blocks=(1, 4, 6, 2), scale=1):
        super().__init__()
        c1, c2 = 64 * scale, 128 * scale
        res = lambda c, n, g: nn.Sequential(*[DW(c, c, 1, g, True) for _ in range(n)])
        first = block(c1, c1, 3, 1, 1, 64) if blocks[0] == 1 else res(c1, blocks[0], 128)
        self.layers = nn.ModuleList([
            block(3, c1, 3, 2, 1), first, DW(c1, c1, 2, 128), res(c1, blocks[1], 128), DW(c1, c2, 2, 256),
            res(c2, blocks[2], 256), DW(c2, c2, 2, 512), res(c2, blocks[3], 256)])
        self.conv_sep = block(c2, 512, 1)
        self.features = nn.Sequential(block(512, 512, 7, groups=512, act=False), nn.Flatten(),
                                      nn.Linear(512, dim, bias=False), nn.BatchNorm1d(dim))

    def forward(self, x, shapes):
        for m in self.layers:
            x = m(x)
            shapes.append(list(x.shape))
        x = self.features(self.conv_sep(x))
        shapes.append(list(x.shape))
        return x


def describe(net):
    flops = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
            flops[0] += 2 * k * out.shape[1] * out.shape[2] * out.shape[3] // out.shape[0]
        elif isinstance(m, nn.Linear):
            flops[0] += 2 * m.in_features * m.out_features

    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    net.eval()
    shapes = []
    with torch.no_grad():
        net(torch.zeros(1, 3, 112, 112), shapes)
    params = list(net.parameters())
    return {
        "params_trainable": sum(p.numel() for p in params if p.requires_grad),
        "params_total": sum(p.numel() for p in params),
        "running_stats": sum(b.numel() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked")),
        "param_shapes": sorted("x".join(str(s) for s in p.shape) for p in params),
        "stage_shapes": shapes,
        "flops": flops[0],
    }


def main():
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "input": [1, 3, 112, 112], "models": {}}
    for depth, blocks in ((18, (2, 2, 2, 2)), (34, (3, 4, 6, 3)), (50, (3, 4, 14, 3)), (100, (3, 13, 30, 3)),
                          (200, (6, 26, 60, 6))):
        out["models"]["iresnet%d" % depth] = describe(IResNet(blocks))
    out["models"]["mobilefacenet_dim512"] = describe(MobileFaceNet(512))
    out["models"]["mobilefacenet_dim128"] = describe(MobileFaceNet(128))
    out["models"]["mobilefacenet_dim512_scale2"] = describe(MobileFaceNet(512, scale=2))
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
