"""Evaluation videos: camera frames side by side, encoded as H.264 mp4 with PyAV (extra `report`)."""

from __future__ import annotations

import io

import numpy as np

from dagger_cli.core.errors import DaggerError


def side_by_side(cameras: dict[str, np.ndarray]) -> np.ndarray:
    """{camera: (n, H, W, 3) uint8} -> (n, max H, sum W, 3), shorter cameras padded with black at the bottom."""
    views = [np.asarray(v) for v in cameras.values()]
    height = max(v.shape[1] for v in views)
    padded = [np.pad(v, ((0, 0), (0, height - v.shape[1]), (0, 0), (0, 0))) for v in views]
    return np.concatenate(padded, axis=2).astype(np.uint8, copy=False)


def encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    """(T, H, W, 3) uint8 -> mp4 bytes (H.264, yuv420p; odd sizes padded to even)."""
    try:
        import av
    except ImportError:
        raise DaggerError("evaluation videos need PyAV: pip install 'dagger-cli[report]'") from None
    from fractions import Fraction

    t, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def decoded_frames(path) -> int:
    """Frames an mp4 file decodes to (what tests and `dagger report` check)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
