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
