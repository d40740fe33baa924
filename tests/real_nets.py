"""Small real-world-shaped models shared by the any-model tests and benchmarks/real_models.py.

ResNet-style (BatchNorm after every conv, residual adds, a strided 1x1
shortcut), MobileNet-style (depthwise + pointwise convs, BatchNorm, ReLU6) and
a sequence model (Embedding, LSTM, bidirectional GRU, LayerNorm, a root
parameter): between them every layer kind the ``.dcz`` compresses or stores.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class SmallResNet(nn.Module):
    """ResNet-8-ish on 1x8x8 images, 10 classes."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.layer1 = Block(width, width, 1)
        self.layer2 = Block(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean((2, 3)))


class SmallMobileNet(nn.Module):
    """MobileNet-v1-ish: depthwise 3x3 (groups = channels) then pointwise 1x1, each with BatchNorm."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6()]
        c = width
        for out, stride in ((2 * width, 2), (2 * width, 1), (4 * width, 2)):
            layers += [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU6(),
                       nn.Conv2d(c, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU6()]
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class SeqNet(nn.Module):
    """Token classifier: Embedding -> LSTM -> bidirectional GRU -> LayerNorm -> Linear, times a root scale."""

    def __init__(self, vocab: int = 40, dim: int = 12, classes: int = 5) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, 16, batch_first=True)
        self.gru = nn.GRU(16, 8, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, classes)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(tokens))
        h, _ = self.gru(h)
        return self.head(self.norm(h[:, -1])) * self.scale
