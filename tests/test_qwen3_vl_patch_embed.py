"""The vision tower's patch convolution, run as a matrix product, gives the same embeddings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rerankers.qwen3_vl.patch_embed import LinearPatchProjection, use_linear_patch_projection


def patch_conv(width: int) -> nn.Conv3d:
    torch.manual_seed(0)
    return nn.Conv3d(3, width, kernel_size=(2, 16, 16), stride=(2, 16, 16), bias=True)


@pytest.mark.parametrize("width", [32, 1024])
def test_product_equals_the_convolution(width: int) -> None:
    conv = patch_conv(width)
    patches = torch.randn(500, 3, 2, 16, 16)
    with torch.inference_mode():
        expected = conv(patches)
        got = LinearPatchProjection(conv)(patches)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_the_swap_shares_the_weights_and_keeps_state_dict_names() -> None:
    embed = nn.Module()
    embed.proj = patch_conv(32)
    model = nn.Module()
    model.visual = nn.Module()
    model.visual.patch_embed = embed
    names = set(model.state_dict())
    weight = embed.proj.weight
    assert use_linear_patch_projection(model)
    assert set(model.state_dict()) == names
    assert embed.proj.weight is weight


def test_other_layouts_are_left_alone() -> None:
    overlapping = nn.Module()
    overlapping.visual = nn.Module()
    overlapping.visual.patch_embed = nn.Module()
    overlapping.visual.patch_embed.proj = nn.Conv3d(3, 8, kernel_size=3, stride=1)
    assert not use_linear_patch_projection(overlapping)
    assert isinstance(overlapping.visual.patch_embed.proj, nn.Conv3d)
    assert not use_linear_patch_projection(nn.Linear(2, 2))  # no vision tower at all
