"""Image preprocessing as openpi does it: resize with zero padding (aspect ratio kept), uint8 → [-1, 1]."""

from __future__ import annotations

import numpy as np


def resize_with_pad(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., H, W, C) uint8 -> (..., height, width, C) uint8: bilinear resize to fit, centred on black."""
    from PIL import Image

    if images.shape[-3:-1] == (height, width):
        return images
    shape = images.shape
    flat = images.reshape(-1, *shape[-3:])
    out = np.zeros((len(flat), height, width, shape[-1]), dtype=np.uint8)
    for i, image in enumerate(flat):
        pil = Image.fromarray(image)
        cur_w, cur_h = pil.size
        ratio = max(cur_w / width, cur_h / height)
        new_h, new_w = int(cur_h / ratio), int(cur_w / ratio)
        resized = np.asarray(pil.resize((new_w, new_h), resample=Image.BILINEAR))
        top, left = max(0, int((height - new_h) / 2)), max(0, int((width - new_w) / 2))
        out[i, top : top + new_h, left : left + new_w] = resized.reshape(new_h, new_w, -1)
    return out.reshape(*shape[:-3], height, width, shape[-1])


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


CROP_FRACTION, MAX_ROTATION_DEG = 0.95, 5.0
BRIGHTNESS, CONTRAST, SATURATION = (0.7, 1.3), (0.6, 1.4), (0.5, 1.5)


def draw_augmentation(wrist: list[bool], height: int, width: int, batch: int):
    """The draws of one `augment_for_training` call on a batch of `batch` images of height × width: per slot
    (top, left, degrees, brightness, contrast, saturation), one draw per slot for the whole batch as openpi does,
    repeated for each sample -> (batch, K, 6) float64. From torch's global CPU generator, which run checkpoints hold,
    in the order the augmentation applies them; a wrist slot draws only its colours (its crop and rotation are 0)."""
    import torch

    rows = []
    for is_wrist in wrist:
        top = left = degrees = 0.0
        if not is_wrist:
            crop_h, crop_w = int(height * CROP_FRACTION), int(width * CROP_FRACTION)
            top = int(torch.randint(0, height - crop_h + 1, ()))
            left = int(torch.randint(0, width - crop_w + 1, ()))
            degrees = float(torch.rand(())) * 2 * MAX_ROTATION_DEG - MAX_ROTATION_DEG
        factors = [float(low + (high - low) * torch.rand(())) for low, high in (BRIGHTNESS, CONTRAST, SATURATION)]
        rows.append([top, left, degrees, *factors])
    return torch.tensor(rows, dtype=torch.float64).reshape(1, len(wrist), 6).repeat(batch, 1, 1)


def _augment_slot(x, is_wrist: bool, top: int, left: int, degrees: float, brightness: float, contrast: float,
                  saturation: float):
    """One slot's images (B, 3, H, W) in [0, 1], all with the same draws."""
    import torch
    import torch.nn.functional as F

    height, width = x.shape[-2:]
    if not is_wrist:
        crop_h, crop_w = int(height * CROP_FRACTION), int(width * CROP_FRACTION)
        x = F.interpolate(x[:, :, top : top + crop_h, left : left + crop_w], size=(height, width),
                          mode="bilinear", align_corners=False)
        if abs(degrees) > 0.1:
            angle = torch.tensor(degrees * torch.pi / 180.0, dtype=torch.float64)
            cos, sin = float(torch.cos(angle)), float(torch.sin(angle))
            theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
            grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    grey = x.mean(dim=1, keepdim=True)
    x = grey + (x - grey) * saturation
    return x.clamp(0.0, 1.0) * 2.0 - 1.0


def augment_for_training(images, wrist: list[bool], draws=None):
    """Train-time augmentation of model-ready images (B, K, 3, H, W) in [-1, 1], with openpi's PyTorch training
    distribution (`preprocess_observation_pytorch(train=True)`, which RLinf's π₀ update uses): on each non-wrist
    slot a random crop of 95% resized back and a rotation of up to ±5° (none under 0.1°), then on every slot
    brightness ×U(0.7, 1.3), contrast U(0.6, 1.4) about each image's mean and saturation U(0.5, 1.5) about each
    pixel's grey, clamped. As in openpi, one draw per slot for the whole batch: `draws` (B, K, 6) from
    `draw_augmentation`, drawn here when None. Samples whose draws differ (a data-parallel rank's part of two of a
    single learner's micro-batches) are augmented group by group, each as that micro-batch would be."""
    import torch

    height, width = images.shape[-2:]
    if draws is None:
        draws = draw_augmentation(wrist, height, width, len(images))
    out = []
    for slot, is_wrist in enumerate(wrist):
        x = images[:, slot] / 2.0 + 0.5  # [0, 1]
        groups, which = torch.unique(draws[:, slot], dim=0, return_inverse=True)
        if len(groups) == 1:
            out.append(_augment_slot(x, is_wrist, *_scalars(groups[0])))
            continue
        part = torch.empty_like(x)
        for g, row in enumerate(groups):
            index = (which == g).nonzero().flatten().to(x.device)
            part[index] = _augment_slot(x[index], is_wrist, *_scalars(row))
        out.append(part)
    return torch.stack(out, dim=1)


def _scalars(row) -> tuple:
    top, left, degrees, brightness, contrast, saturation = row.tolist()
    return int(top), int(left), degrees, brightness, contrast, saturation
