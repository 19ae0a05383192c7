"""DANet head: position and channel attention branches, fused by sum, each supervised.

Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019), https://arxiv.org/abs/1809.02983
"""
from __future__ import annotations

from torch import Tensor, nn

from seg.models.attention import CAM, PAM
from seg.models.layers import Classifier, ConvBNReLU
from seg.registry import MODELS


@MODELS.register_module()
class DAHead(nn.Module):
    """Two branches from the backbone feature:
    PAM: conv 3x3 -> PAM -> conv 3x3 -> own classifier (``'pam'``);
    CAM: conv 3x3 -> CAM -> conv 3x3 -> own classifier (``'cam'``);
    the sum of the two branch features -> classifier (``'out'``).

    In training the head returns all three (the segmentor weights each by ``loss_weights``); in eval only
    ``'out'``, which is all inference uses.
    """

    outputs = ('out', 'pam', 'cam')
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, pam_reduction: int = 8,
                 in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        self.in_index = in_index
        self.pam_in = ConvBNReLU(in_channels, channels, 3, norm=norm)
        self.pam = PAM(channels, pam_reduction)
        self.pam_out = ConvBNReLU(channels, channels, 3, norm=norm)
        self.pam_cls = Classifier(channels, num_classes, dropout)
        self.cam_in = ConvBNReLU(in_channels, channels, 3, norm=norm)
        self.cam = CAM(channels)
        self.cam_out = ConvBNReLU(channels, channels, 3, norm=norm)
        self.cam_cls = Classifier(channels, num_classes, dropout)
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        pam = self.pam_out(self.pam(self.pam_in(x)))
        cam = self.cam_out(self.cam(self.cam_in(x)))
        outs = {'out': self.cls(pam + cam)}
        if self.training:
            outs['pam'] = self.pam_cls(pam)
            outs['cam'] = self.cam_cls(cam)
        return outs
