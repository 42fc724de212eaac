"""Write an H.264 + AAC mp4 with PyAV from yuv420p frames and a float waveform, atomically.

The encoder runs single-threaded with fixed options so the same input gives the same bytes (parallelism comes from
running several clips at once). Audio is fed in 1024-sample chunks interleaved with the video frames.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import av
import numpy as np

from pipeline.common.atomic import atomic_open

AAC_FRAME = 1024


def write_mp4(path: Path, width: int, height: int, fps: int, num_frames: int, frame_at: Callable[[int], np.ndarray],
              audio: np.ndarray, sample_rate: int, crf: int = 26, preset: str = "ultrafast") -> None:
    """Encode `num_frames` frames (`frame_at(i)` -> yuv420p uint8 [h*3/2, w]) and `audio` [channels, n] to `path`."""
    channels = audio.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    with atomic_open(path, "wb") as fh:
        with av.open(fh, "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.thread_count = 1
            vs.options = {"preset": preset, "crf": str(crf), "threads": "1"}
            aus = out.add_stream("aac", rate=sample_rate)
            aus.layout = layout
            aus.thread_count = 1
            aus.options = {"aac_coder": "fast"}  # half the encoding time of the default two-loop search
            sent = 0
            total = audio.shape[1]
            for i in range(num_frames):
                vf = av.VideoFrame.from_ndarray(frame_at(i), format="yuv420p")
                vf.pts = i
                for p in vs.encode(vf):
                    out.mux(p)
                upto = min(total, int(round((i + 1) * sample_rate / fps)))
                while sent + AAC_FRAME <= upto or (i == num_frames - 1 and sent < total):
                    chunk = np.ascontiguousarray(audio[:, sent:sent + AAC_FRAME])
                    af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                    af.sample_rate = sample_rate
                    af.pts = sent
                    for p in aus.encode(af):
                        out.mux(p)
                    sent += chunk.shape[1]
            for p in vs.encode():
                out.mux(p)
            for p in aus.encode():
                out.mux(p)
