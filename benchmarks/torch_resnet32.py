"""A plain-PyTorch ResNet-32 for CIFAR (He et al. 2016, section 4.2): the benchmarks' peer.

The layout of the paper's CIFAR networks with n = 5:

- a 3x3 convolution to 16 channels, batch normalization, ReLU;
- three stages of n basic blocks at 16, 32 and 64 channels on 32x32, 16x16 and 8x8 maps; the first
  block of the second and third stage halves the resolution with a stride-2 convolution;
- a basic block is conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU;
- shortcuts are parameter-free ("option A"): identity, or where the shape changes, the input taken
  at every other pixel with zero channels appended;
- global average pooling and a fully connected layer to the classes.

Convolutions have no bias (batch normalization follows each one), so the parameter count equals
that of ``rir_keras.applications.ResNet32``.
"""
import torch
from torch import nn
from torch.nn import functional


def conv3x3(channels_in, channels_out, stride=1):
    return nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=stride, padding=1, bias=False)


class OptionAShortcut(nn.Module):
    """Identity; where the shape changes, subsample by ``stride`` and zero-pad the channels."""

    def __init__(self, channels_in, channels_out, stride):
        super().__init__()
        self.extra_channels = channels_out - channels_in
        self.stride = stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = functional.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x


class BasicBlock(nn.Module):
    def __init__(self, channels_in, channels_out, stride):
        super().__init__()
        self.conv1 = conv3x3(channels_in, channels_out, stride)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = conv3x3(channels_out, channels_out)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = OptionAShortcut(channels_in, channels_out, stride)

    def forward(self, x):
        out = functional.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return functional.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet with ``6 * blocks_per_stage + 2`` layers (5 gives ResNet-32)."""

    def __init__(self, blocks_per_stage=5, widths=(16, 32, 64), classes=10):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(3, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, channels = [], widths[0]
        for index, width in enumerate(widths):
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(channels, classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.classifier(torch.flatten(functional.adaptive_avg_pool2d(x, 1), 1))


def resnet32(classes=10):
    return CifarResNet(blocks_per_stage=5, classes=classes)


def parameter_count(model):
    """Trainable parameters plus batch-norm running statistics: what Keras' ``count_params`` counts."""
    trainable = sum(p.numel() for p in model.parameters())
    statistics = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable, trainable + statistics
