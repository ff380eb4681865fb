"""Shared fixtures for the vision tests: tiny hand-built nets and the real EfficientNet-Lite0 (loaded once)."""

import pytest
import torch
import torch.nn as nn

from vse.vision.models import wrap_module


class TinyNet(nn.Module):
    """inp (Identity) -> pre (3x3 conv, 3->2) -> proj (1x1 conv, 2->3) -> bn -> act (ReLU) -> pool -> flat -> fc (3->2).

    Hand-set weights so that the eq. 1 product from `pre` to the classes is known by hand (see test_weights)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Identity()
        self.pre = nn.Conv2d(3, 2, 3, padding=1)
        self.proj = nn.Conv2d(2, 3, 1, bias=True)
        self.bn = nn.BatchNorm2d(3, eps=1.0)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            self.pre.weight.copy_(torch.randn(self.pre.weight.shape, generator=g))
            self.proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]).view(3, 2, 1, 1))
            self.proj.bias.copy_(torch.tensor([0.5, -0.5, 1.0]))
            self.bn.weight.copy_(torch.tensor([1.0, 2.0, 1.0]))
            self.bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
            self.bn.running_mean.copy_(torch.tensor([1.0, 0.0, 2.0]))
            self.bn.running_var.copy_(torch.tensor([3.0, 0.0, 8.0]))  # with eps=1: scales 1/2, 2, 1/3
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 3.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        x = self.pre(self.inp(x))
        return self.fc(self.flat(self.pool(self.act(self.bn(self.proj(x))))))


@pytest.fixture
def tiny():
    return wrap_module("tiny", TinyNet(), ["cat", "dog"], image_size=8)


@pytest.fixture(scope="session")
def lite0():
    from vse.vision.models import load_model

    return load_model("efficientnet_lite0")
