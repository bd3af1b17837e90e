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


class VideoWriter:
    """Frames appended to one H.264 mp4 (yuv420p; `lossless`: RGB, bit-exact), odd sizes padded to even."""

    def __init__(self, target, fps: float, lossless: bool = False):
        try:
            import av
        except ImportError:
            raise DaggerError("videos need PyAV: pip install 'dagger-cli[report]'") from None
        from fractions import Fraction

        self._av, self._fps, self._lossless = av, Fraction(fps).limit_denominator(1000), lossless
        self._container = av.open(target, mode="w", format="mp4")
        self._stream = None

    def write(self, frames: np.ndarray) -> None:
        """(T, H, W, 3) uint8, appended."""
        frames = np.asarray(frames)
        _, h, w, _ = frames.shape
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        if self._stream is None:
            codec = "libx264rgb" if self._lossless else "libx264"
            self._stream = self._container.add_stream(codec, rate=self._fps)
            self._stream.width, self._stream.height = frames.shape[2], frames.shape[1]
            self._stream.pix_fmt = "rgb24" if self._lossless else "yuv420p"
            if self._lossless:
                self._stream.options = {"qp": "0"}
        for frame in frames:
            for packet in self._stream.encode(self._av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    """(T, H, W, 3) uint8 -> mp4 bytes (H.264, yuv420p; odd sizes padded to even)."""
    out = io.BytesIO()
    with VideoWriter(out, fps) as writer:
        writer.write(frames)
    return out.getvalue()


def read_frames(path) -> np.ndarray:
    """Every frame of an mp4 as (T, H, W, 3) uint8 RGB."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def decoded_frames(path) -> int:
    """Frames an mp4 file decodes to (what tests and `dagger report` check)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
