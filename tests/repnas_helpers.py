"""A tiny RepNAS backbone for fast tests: three 3x3 layers (stride 2 without identity,
stride 1 with identity, stride 1 with a width change), a 1x1 layer, a classifier."""
from typing import Tuple

import flax.linen as nn

from nas_jax.models.conv_blocks import BlockSpec, classify, conv_block


class TinyNet(nn.Module):
    num_classes: int = 10
    block: str = "repnas"
    branch_mask: Tuple = ()
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = BlockSpec(self.block, None, self.branch_mask)
        x = nn.relu(conv_block(spec, self, 4, self.kernel_size, 2, name="conv1")(x, train))
        x = nn.relu(conv_block(spec, self, 4, self.kernel_size, 1, name="conv2")(x, train))
        x = nn.relu(conv_block(spec, self, 6, self.kernel_size, 1, name="conv3")(x, train))
        x = nn.relu(conv_block(spec, self, 6, 1, 1, name="head")(x, train))
        return classify(x, self.num_classes)
