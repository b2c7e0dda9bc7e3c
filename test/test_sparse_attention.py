"""Sparse attention equals dense attention under the same sliding-window + anchor mask,
without ever building that n x n mask itself; the model's streaming split is exact."""

from __future__ import annotations

import pytest
import torch

from qcraft_world_model.bench.attention import dense_masked_attention as dense_reference
from qcraft_world_model.model import WorldModel, WorldModelConfig
from qcraft_world_model.model.attention import SparseAttention, local_attention_mask


@pytest.mark.parametrize("tokens, window, anchors", [(256, 128, 4), (300, 128, 4), (1024, 128, 16), (70, 16, 0)])
def test_sparse_attention_equals_dense_masked_reference(tokens: int, window: int, anchors: int) -> None:
    torch.manual_seed(0)
    attn = SparseAttention(dim=64, heads=4, window=window, anchors=anchors, tokens=tokens)
    x, g = torch.randn(2, tokens, 64), torch.randn(2, anchors, 64)
    seq, anc = attn(x, g)
    reference = dense_reference(attn, x, g)
    assert (torch.cat([seq, anc], 1) - reference).abs().max().item() < 1e-5


def test_window_mask_is_linear_in_tokens_not_quadratic() -> None:
    small = local_attention_mask(1024, 128, 4)
    large = local_attention_mask(4096, 128, 4)
    assert large.numel() == 4 * small.numel()  # O(n * window), where a dense mask would grow 16x
    assert small.shape == (16, 64, 3 * 64 + 4)


def test_far_tokens_do_not_see_each_other_but_anchors_see_all() -> None:
    torch.manual_seed(0)
    attn = SparseAttention(dim=32, heads=2, window=16, anchors=2, tokens=128)
    x, g = torch.randn(1, 128, 32, requires_grad=True), torch.randn(1, 2, 32)
    seq, anc = attn(x, g)
    grad_far = torch.autograd.grad(seq[0, 0].sum(), x, retain_graph=True)[0]
    assert grad_far[0, 9:].abs().max() == 0 and grad_far[0, :9].abs().max() > 0  # |i - j| <= 8 only
    grad_anchor = torch.autograd.grad(anc[0, 0].sum(), x)[0]
    assert (grad_anchor[0].abs().sum(-1) > 0).all()


def test_wrong_token_count_is_refused() -> None:
    attn = SparseAttention(dim=32, heads=2, window=16, anchors=2, tokens=128)
    with pytest.raises(ValueError, match="built for 128 tokens"):
        attn(torch.randn(1, 100, 32), torch.randn(1, 2, 32))


def test_stem_cached_per_frame_gives_the_same_prediction_as_the_whole_window() -> None:
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(image_size=64, patch=8, dim=32, heads=2, depth=2, stem_dim=16,
                                        anchors=4, attention_window=16, decoder_dim=16)).eval()
    window = torch.randint(0, 256, (1, 1, 16, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        whole = model(window)
        cached = torch.stack([model.stem(window[:, :, t]) for t in range(16)], dim=2)  # one pass per frame
        streamed = model.forward_window(cached, window[:, :, -1], window[:, :, -2])
    assert torch.allclose(whole.frames, streamed.frames, atol=1e-6)
    assert torch.allclose(whole.agents.paths, streamed.agents.paths, atol=1e-5)


def test_untrained_frame_decoder_starts_as_copy_last_frame() -> None:
    model = WorldModel(WorldModelConfig(image_size=64, patch=8, dim=32, heads=2, depth=1, stem_dim=16,
                                        anchors=4, attention_window=16, decoder_dim=16)).eval()
    window = torch.randint(0, 256, (1, 1, 16, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        frames = model(window).frames
    last = window[:, :, -1].float() / 255
    assert torch.allclose(frames, last.unsqueeze(2).expand_as(frames), atol=1e-5)


def test_written_out_temporal_gru_is_torch_gru_on_the_same_weights() -> None:
    """The bottleneck's own recurrence (faster to export and to run) is nn.GRU over [proj(x), its change]."""
    from qcraft_world_model.model.temporal import TemporalBottleneck

    torch.manual_seed(3)
    temporal = TemporalBottleneck(stem_dim=16, dim=32, tokens_per_camera=6, cameras=2).eval()
    stem = torch.randn(3, 2, 5, 6, 16)
    with torch.no_grad():
        x = temporal.proj(stem)
        change = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:] - x[:, :, :-1]], dim=2)
        seq = torch.cat([x, change], dim=-1).permute(0, 1, 3, 2, 4).reshape(3 * 2 * 6, 5, -1)
        _, last = temporal.gru(seq)
        reference = temporal.norm(last[0].reshape(3, 2, 6, -1) + temporal.position).reshape(3, 12, -1)
        torch.testing.assert_close(temporal(stem), reference, atol=1e-5, rtol=1e-5)
    # Gradients reach every weight the recurrence reads.
    temporal.train()
    temporal(stem).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in temporal.parameters())
