"""FCN head.

Fully Convolutional Networks for Semantic Segmentation (Long et al., CVPR 2015),
https://arxiv.org/abs/1411.4038 -- in mmsegmentation's form (convs, optional concat with the input).
"""
from __future__ import annotations

from torch import Tensor, nn

from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.registry import MODELS


@MODELS.register_module()
class FCNHead(nn.Module):
    """``num_convs`` 3x3 ConvBNReLU -> [concat with input -> 3x3 ConvBNReLU] -> classifier.

    Used as the baseline decode head and as the auxiliary head on stage 3.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_convs: int = 2,
                 kernel_size: int = 3, dilation: int = 1, concat_input: bool = True, in_index: int = -1,
                 dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        if num_convs < 0:
            raise ValueError(f'num_convs must be >= 0, got {num_convs}')
        if num_convs == 0 and in_channels != channels:
            raise ValueError(f'num_convs=0 needs in_channels == channels, got {in_channels} != {channels}')
        self.in_index = in_index
        layers = [ConvBNReLU(in_channels if i == 0 else channels, channels, kernel_size, dilation, norm)
                  for i in range(num_convs)]
        self.convs = nn.Sequential(*layers)
        self.conv_cat = (ConvBNReLU(in_channels + channels, channels, kernel_size, norm=norm)
                         if concat_input else None)
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = conv_of_concat(self.conv_cat, [x, out])
        return {'out': self.cls(out)}
