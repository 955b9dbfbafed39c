"""Small random PyTorch models shared by the converter tests (torch imported here only)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(20, 32), nn.Linear(32, 16), nn.Linear(16, 5)

    def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class ResBlock(nn.Module):
    """ResNet basic block with a projection shortcut, then a pooled classifier head."""

    def __init__(self, cin: int = 8, cout: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False),
                                  nn.BatchNorm2d(cout))
        self.fc = nn.Linear(cout, 10)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = F.relu(y + self.down(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class MobileBlock(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project (+ hardswish)."""

    def __init__(self, c: int = 8, expand: int = 4) -> None:
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False),
                                nn.BatchNorm2d(h), nn.Hardswish())
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.project(self.dw(self.expand(x)))


class BertLayer(nn.Module):
    """BERT encoder layer: multi-head self-attention with a padding mask, GELU FFN, post-LN."""

    def __init__(self, d: int = 32, heads: int = 4, ff: int = 64) -> None:
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dh).transpose(1, 2)

    def forward(self, x, mask):
        b, t, d = x.shape
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        s = q @ k.transpose(-1, -2) / math.sqrt(self.dh)
        s = s + (1.0 - mask[:, None, None, :]) * -10000.0
        a = torch.softmax(s, dim=-1) @ v
        a = a.transpose(1, 2).reshape(b, t, d)
        x = self.ln1(x + self.o(a))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


def seeded(cls, *args, seed: int = 0, **kw):
    """An eval-mode model with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    m = cls(*args, **kw)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def example(name: str, seed: int = 1):
    """(model, example input tuple) for one of the five test models."""
    g = torch.Generator().manual_seed(seed)
    if name == "mlp":
        return seeded(MLP), (torch.randn(4, 20, generator=g),)
    if name == "lenet5":
        return seeded(LeNet5), (torch.randn(2, 1, 28, 28, generator=g),)
    if name == "resblock":
        return seeded(ResBlock), (torch.randn(2, 8, 12, 12, generator=g),)
    if name == "mobileblock":
        return seeded(MobileBlock), (torch.randn(2, 8, 10, 10, generator=g),)
    if name == "bert":
        mask = torch.ones(2, 7)
        mask[1, 5:] = 0
        return seeded(BertLayer), (torch.randn(2, 7, 32, generator=g), mask)
    raise KeyError(name)


MODELS = ("mlp", "lenet5", "resblock", "mobileblock", "bert")
