"""The photometric jitter: one response per clip, the same on its past and its future, geometry untouched."""

from __future__ import annotations

import torch

from qcraft_world_model.train.augment import PhotometricJitter


def _clip_pair(batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    window = torch.randint(0, 256, (batch, 1, 3, 3, 8, 16), dtype=torch.uint8)
    future = torch.rand(batch, 1, 2, 3, 8, 16)
    return window, future


def test_strength_zero_returns_the_frames_unchanged() -> None:
    window, future = _clip_pair()
    out_w, out_f = PhotometricJitter(strength=0.0)(window, future, torch.Generator().manual_seed(1))
    assert out_w is window and out_f is future


def test_one_response_per_clip_applied_to_past_and_future_alike() -> None:
    # A flat grey clip whose future repeats its past: without noise, the jittered past and future
    # must still agree (the camera's response does not change between them), and clips must differ.
    grey = torch.full((3, 1, 4, 3, 8, 16), 128, dtype=torch.uint8)
    future = torch.full((3, 1, 2, 3, 8, 16), 128 / 255.0)
    jitter = PhotometricJitter(noise=0.0)
    out_w, out_f = jitter(grey, future, torch.Generator().manual_seed(3))
    assert out_w.dtype == torch.uint8 and out_f.dtype == future.dtype
    assert out_w.shape == grey.shape and out_f.shape == future.shape
    assert (out_w.float() / 255.0 - out_f[:, :, :1]).abs().max() <= 0.5 / 255.0 + 1e-6
    per_clip = out_f.mean(dim=(1, 2, 4, 5))  # (B, 3): each clip's colour
    assert (per_clip[0] - per_clip[1]).abs().max() > 0.005
    # Within a clip every frame and pixel got the same response.
    assert (out_w.float() - out_w[:, :, :1].float()).abs().max() == 0


def test_draws_follow_the_generator_and_stay_in_range() -> None:
    window, future = _clip_pair()
    jitter = PhotometricJitter(strength=2.0)
    a = jitter(window, future, torch.Generator().manual_seed(5))
    b = jitter(window, future, torch.Generator().manual_seed(5))
    c = jitter(window, future, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert 0.0 <= float(a[1].min()) and float(a[1].max()) <= 1.0
    # Noise is on the inputs only: the future stays a monotone function of the original, per clip
    # and channel (a camera response curve), so brighter stays brighter.
    for clip in range(future.shape[0]):
        for channel in range(3):
            original = future[clip, :, :, channel].flatten()
            seen = a[1][clip, :, :, channel].flatten()[original.argsort()]
            assert bool((seen[1:] >= seen[:-1] - 1e-6).all())


def test_lens_zoom_moves_the_image_and_the_intrinsics_together() -> None:
    """A bright patch where a ground point projects lands, after the zoom, where the zoomed camera projects
    that point (within a pixel), for non-square magnifications and an off-centre principal point; both
    clips of a batch get their own lens; the future frames move with the window; strength 0 is the identity."""
    import numpy as np

    from qcraft_world_model.model.geometry import CameraGeometry
    from qcraft_world_model.train.augment import LensZoom

    camera = CameraGeometry.from_mount(96, 48, 48.0, 48.0, 50.0, 22.0, 1.2, 0.0, 1.6, 0.0, 4.0)
    point = np.array([[14.0, 3.0, 0.0]])  # ego frame, on the ground
    (u, v), = camera.project(point)[0]
    window = torch.zeros(2, 1, 3, 3, 48, 96, dtype=torch.uint8)
    window[..., int(v) - 1: int(v) + 2, int(u) - 1: int(u) + 2] = 255
    future = window[:, :, :2].float() / 255.0
    generator = torch.Generator().manual_seed(0)
    seen, ahead, cameras = LensZoom(strength=1.0)(window, future, [[camera], [camera]], generator)
    assert seen.dtype == torch.uint8 and seen.shape == window.shape and ahead.shape == future.shape
    assert cameras[0][0].fx != cameras[1][0].fx and cameras[0][0].fx / cameras[0][0].fy != 1.0
    for b in range(2):
        zoomed = cameras[b][0]
        assert 48.0 <= zoomed.fx <= 48.0 * 1.15 and 48.0 <= zoomed.fy <= 48.0 * 1.15
        (zu, zv), = zoomed.project(point)[0]
        for frames in (seen[b, 0, 2].float(), ahead[b, 0, 1] * 255):
            weight = frames.sum(0)
            rows, cols = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(96) + 0.5, indexing="ij")
            centroid = float((weight * cols).sum() / weight.sum()), float((weight * rows).sum() / weight.sum())
            # The patch's centre is the pixel centre (int(u) + 0.5, int(v) + 0.5): within half a pixel of (u, v).
            assert abs(centroid[0] - zu) < 1.0 and abs(centroid[1] - zv) < 1.0, (b, centroid, (zu, zv))
    same = LensZoom(strength=0.0)(window, future, [[camera], [camera]], generator)
    assert same[0] is window and same[1] is future and same[2][0][0] is camera
