"""Sparse attention: a sliding window over the latent tokens plus a few global anchor tokens.

Longformer's pattern. Token i attends to tokens j with |i - j| <= window/2 and to
every anchor; each anchor attends to everything. It is computed in blocks of
window/2 tokens: each block's queries meet only the keys of its own and its two
neighbouring blocks (plus the anchors), so compute and memory grow as
O(n * (1.5 window + anchors)) and no n x n mask is ever built. Plain tensor ops
and scaled_dot_product_attention: exportable to ONNX and TensorRT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def local_attention_mask(tokens: int, window: int, anchors: int) -> torch.Tensor:
    """(blocks, block, 3*block + anchors) bool: which keys each query of each block may see.

    Keys of block k are [block k-1, block k, block k+1, anchors]; a key is visible
    when it is a real token (not padding) within window/2 of the query, or an anchor.
    Padded query rows see the anchors only, so they never produce NaN.
    """
    block = window // 2
    blocks = -(-tokens // block)
    query = torch.arange(blocks * block).view(blocks, block, 1)
    key = (torch.arange(blocks).view(blocks, 1, 1) - 1) * block + torch.arange(3 * block).view(1, 1, -1)
    visible = ((query - key).abs() <= block) & (key >= 0) & (key < tokens) & (query < tokens)
    return torch.cat([visible, torch.ones(blocks, block, anchors, dtype=torch.bool)], dim=-1)


class SparseAttention(nn.Module):
    """Multi-head attention of ``tokens`` sequence tokens (sliding window) and ``anchors`` global tokens."""

    def __init__(self, dim: int, heads: int, window: int, anchors: int, tokens: int) -> None:
        super().__init__()
        if window % 2 or window < 2:
            raise ValueError(f"window must be even and >= 2, got {window}")
        self.heads, self.window, self.anchors, self.tokens = heads, window, anchors, tokens
        self.block = window // 2
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        # A buffer, not a Python attribute: tracing/export must see a real tensor. Tiled per head
        # because the blocks are folded into the head axis below: ONNX attention takes 4-D inputs.
        # Additive (0 / -inf) and 4-D: with that, SDPA runs its fused flash kernel on the CPU; a
        # boolean mask sends it down the unfused math path, 5x slower here (docs/model.md,
        # sparse attention). It
        # follows the module's dtype (bf16/fp16 plans), as SDPA wants the mask in the query's dtype.
        visible = local_attention_mask(tokens, window, anchors).repeat(heads, 1, 1)
        self.register_buffer("local_mask", torch.zeros(visible.shape).masked_fill(~visible, float("-inf"))[None],
                             persistent=False)

    def forward(self, x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, n, dim), anchors (B, A, dim) → updated (x, anchors)."""
        b, n, dim = x.shape
        a = anchors.shape[1]
        if n != self.tokens or a != self.anchors:
            raise ValueError(f"built for {self.tokens} tokens + {self.anchors} anchors, got {n} + {a}")
        h, hd, block = self.heads, dim // self.heads, self.block
        qkv = self.qkv(torch.cat([x, anchors], dim=1)).view(b, n + a, 3, h, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, n + A, hd)
        q_seq, k_seq, v_seq = q[:, :, :n], k[:, :, :n], v[:, :, :n]
        q_anc, k_anc, v_anc = q[:, :, n:], k[:, :, n:], v[:, :, n:]

        blocks = self.local_mask.shape[1] // h
        pad = blocks * block - n
        q_blk = F.pad(q_seq, (0, 0, 0, pad)).view(b, h, blocks, block, hd)
        # One zero block either side, then each block's keys = its neighbours and itself.
        k_pad = F.pad(k_seq, (0, 0, block, pad + block)).view(b, h, blocks + 2, block, hd)
        v_pad = F.pad(v_seq, (0, 0, block, pad + block)).view(b, h, blocks + 2, block, hd)
        k_blk = torch.cat([k_pad[:, :, :-2], k_pad[:, :, 1:-1], k_pad[:, :, 2:],
                           k_anc.unsqueeze(2).expand(b, h, blocks, a, hd)], dim=3)
        v_blk = torch.cat([v_pad[:, :, :-2], v_pad[:, :, 1:-1], v_pad[:, :, 2:],
                           v_anc.unsqueeze(2).expand(b, h, blocks, a, hd)], dim=3)
        keys = k_blk.shape[3]
        local = F.scaled_dot_product_attention(q_blk.reshape(b, h * blocks, block, hd),
                                               k_blk.reshape(b, h * blocks, keys, hd),
                                               v_blk.reshape(b, h * blocks, keys, hd), attn_mask=self.local_mask)
        local = local.reshape(b, h, blocks * block, hd)[:, :, :n]

        glob = F.scaled_dot_product_attention(q_anc, k, v)  # anchors see every token: O(A * n)
        merged = torch.cat([local, glob], dim=2).transpose(1, 2).reshape(b, n + a, dim)
        merged = self.out(merged)
        return merged[:, :n], merged[:, n:]
