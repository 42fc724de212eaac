"""Decode one clip into what a shard stores, encode it, and check that every encoded component decodes.

Input is either a video file (mp4: the frame on screen at the centre time, or K evenly spaced frames, plus the whole
audio track) or the extracted layout other repositories use (JPEG frames + a WAV). Audio always goes through FFmpeg's
resampler (PyAV) to 16 kHz mono signed 16-bit, as VGGSound's own preprocessing does (`ffmpeg -ac 1 -ar 16000`):
FFmpeg filters before decimating, DALI's resampler does not. Every failure raises `MediaError` with one of the
reasons of the failures file: unreadable, corrupt, no_audio, too_short, no_video (missing is decided by the caller).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

from pipeline.shard import figures
from pipeline.shard.format import CLASS_EXT, IMAGE_EXT, META_EXT, SAMPLE_RATE

REASONS = ("unreadable", "corrupt", "no_audio", "too_short", "no_video", "missing")
SKIP_MARGIN = 0.5  # seconds before a wanted frame from which every frame is decoded
# First bytes of the formats we read (mp4/mov, WAV, Matroska/WebM, JPEG, PNG): a file that starts like one but does
# not parse is corrupt; anything else that does not parse is unreadable (garbage, empty, another format).
_SIGNATURES = ((4, b"ftyp"), (0, b"RIFF"), (0, b"\x1a\x45\xdf\xa3"), (0, b"\xff\xd8\xff"), (0, b"\x89PNG"))


class MediaError(Exception):
    """A clip that cannot be stored; `reason` is one of REASONS, `detail` says what was seen."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Clip:
    """A decoded clip: RGB frames (centre frame first, then the K evenly spaced ones when K > 1) and 16 kHz audio."""

    centre: Image.Image
    spaced: list[Image.Image] = field(default_factory=list)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))  # int16, mono, SAMPLE_RATE
    fps: float | None = None
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    duration: float = 0.0
    quality: dict = field(default_factory=dict)       # pipeline.shard.figures (empty when not computed)


def _open_failure(path: Path, exc: Exception) -> MediaError:
    """The reason a file failed to open or parse: unreadable, or corrupt when it starts like a format we read."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
        return MediaError("unreadable", f"{type(exc).__name__}: {exc}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as err:
        return MediaError("unreadable", f"{type(err).__name__}: {err}")
    if any(head[off:off + len(sig)] == sig for off, sig in _SIGNATURES):
        return MediaError("corrupt", f"container does not parse: {exc}")
    return MediaError("unreadable", f"not a media file: {exc}")


def decode_audio_frames(container: av.container.InputContainer) -> tuple[list[av.AudioFrame], int, int]:
    """Every decoded frame of the first audio stream, plus its sample rate and channel count."""
    if not container.streams.audio:
        raise MediaError("no_audio", "no audio stream")
    stream = container.streams.audio[0]
    ctx = stream.codec_context
    rate = int(ctx.sample_rate or 0)
    channels = int(ctx.layout.nb_channels) if ctx.layout is not None else 0
    container.seek(0)
    return list(container.decode(stream)), rate, channels


SOURCE_FRAMES = 64           # decoded audio frames (of ~1024 samples) the source-level figures read, at most
_FULL_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def source_channels(frames: list[av.AudioFrame]) -> np.ndarray:
    """The decoded frames as float32 `[channels, samples]` in [-1, 1] at the source rate (before any resampling)."""
    if not frames:
        return np.zeros((1, 0), np.float32)
    first = frames[0]
    channels, name = len(first.layout.channels), first.format.name.rstrip("p")
    raw = np.concatenate([f.to_ndarray().reshape(channels, -1) if f.format.is_planar
                          else f.to_ndarray().reshape(-1, channels).T for f in frames], axis=1)
    if raw.dtype == np.float32:                               # AAC and most codecs decode to float already
        return raw
    out = raw.astype(np.float32)
    if name == "u8":
        out -= 128.0
    return out / _FULL_SCALE[name] if name in _FULL_SCALE else out


def resample_mono16k(frames: list[av.AudioFrame]) -> np.ndarray:
    """Decoded audio frames -> int16 mono at SAMPLE_RATE through FFmpeg's resampler (filtered, not aliased).

    The frames go through one `aresample` filter graph (the resampler `ffmpeg -ar 16000 -ac 1` uses); this gives the
    same samples as av.AudioResampler at half its cost.
    """
    if not frames:
        return np.zeros(0, np.int16)
    first = frames[0]
    graph = av.filter.Graph()
    chain = [graph.add_abuffer(format=first.format.name, sample_rate=first.sample_rate, layout=first.layout.name,
                               time_base=first.time_base),
             graph.add("aresample", str(SAMPLE_RATE)),
             graph.add("aformat", f"sample_fmts=s16:channel_layouts=mono:sample_rates={SAMPLE_RATE}"),
             graph.add("asetnsamples", "n=65536:p=0"),  # few large output frames (the last one not padded)
             graph.add("abuffersink")]
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    for frame in frames:
        graph.push(frame)
    graph.push(None)
    chunks = []
    while True:
        try:
            out = graph.pull()
            chunks.append(np.frombuffer(out.planes[0], np.int16, out.samples))
        except (av.error.EOFError, av.error.BlockingIOError):
            break
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _decode_audio(container: av.container.InputContainer, min_duration: float, silence_dbfs: float | None
                  ) -> tuple[np.ndarray, int, int, dict]:
    """The whole first audio stream as int16 mono at SAMPLE_RATE, the original rate and channel count, and, unless
    `silence_dbfs` is None, the audio figures (the source channels read before the resampler)."""
    frames, rate, channels = decode_audio_frames(container)
    audio = resample_mono16k(frames)
    if audio.size == 0:
        raise MediaError("no_audio", "audio stream has no samples")
    if audio.size + SAMPLE_RATE // 100 < min_duration * SAMPLE_RATE:  # 10 ms slack for resampler rounding
        raise MediaError("too_short", f"audio is {audio.size / SAMPLE_RATE:.3f} s, less than {min_duration:g} s")
    if silence_dbfs is None:
        return audio, rate, channels, {}
    step = max(1, len(frames) // SOURCE_FRAMES)       # clipping and channels from evenly spaced decoded frames
    return audio, rate, channels, figures.audio_figures(audio, source_channels(frames[::step]),
                                                        silence_dbfs=silence_dbfs)


def thumbnail(frame: av.VideoFrame) -> np.ndarray:
    """`figures.frame_thumbnail` of a decoded frame's Y, U and V planes (as stored for 8-bit planar YUV, else
    converted to yuv420p first)."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"):
        frame = frame.reformat(format="yuv420p")
    planes = [np.ascontiguousarray(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width])
              for p in frame.planes[:3]]         # contiguous: the cell sums run several times faster
    return figures.frame_thumbnail(*planes)


def scan_video(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
               known: dict[float, np.ndarray]) -> tuple[dict[float, np.ndarray], int, float]:
    """Keyframe thumbnails by pts (`known`'s included), the number of frames the stream holds and the seconds they
    span.

    `known` holds the thumbnails of keyframes already decoded for another purpose (on the way to the centre frame);
    no keyframe is decoded twice. When the container indexes the stream (mp4's sample table: frame count and duration),
    the first and the last keyframe are added, each found by one seek; otherwise one pass reads every packet (counting
    frames and their span) and decodes every keyframe, dropping the other packets undecoded."""
    thumbs = dict(known)
    ctx = stream.codec_context
    ctx.skip_frame = "NONKEY"
    try:
        if stream.frames > 0 and stream.duration:
            for target in (0, int(stream.duration) + (stream.start_time or 0)):
                container.seek(target, stream=stream, backward=True)
                for packet in container.demux(stream):
                    if packet.size and float(packet.pts or 0) in thumbs:
                        break                                 # that keyframe is known: nothing to decode
                    frames = ctx.decode(packet)
                    if frames:
                        thumbs.setdefault(float(frames[0].pts or 0), thumbnail(frames[0]))
                        break
            return thumbs, int(stream.frames), float(stream.duration * stream.time_base)
        count, first, end = 0, None, None
        container.seek(0, stream=stream, backward=True)
        for packet in container.demux(stream):
            pts, size = packet.pts, packet.size
            if size and pts is not None:
                count += 1
                if first is None or pts < first:
                    first = pts
                stop = pts + (packet.duration or 0)
                if end is None or stop > end:
                    end = stop
            if not size or (packet.is_keyframe and float(pts or 0) not in thumbs):
                for f in ctx.decode(packet):        # the final empty packet flushes the decoder
                    thumbs.setdefault(float(f.pts or 0), thumbnail(f))
        span = float((end - first) * stream.time_base) if count else 0.0
        return thumbs, count, span
    finally:
        ctx.skip_frame = "DEFAULT"


def frame_at(container: av.container.InputContainer, stream: av.video.stream.VideoStream, t: float,
             keyframes: dict[float, np.ndarray] | None = None) -> av.VideoFrame:
    """The frame on screen at time t: the last frame starting at or before t (the first frame if none does). With
    `keyframes`, the thumbnail of every keyframe decoded on the way is added to it under its pts.

    Decoding starts at the keyframe before t. Frames that no other frame references and that start more than
    SKIP_MARGIN before t cannot be the answer, so the decoder skips them (bit-exact for the frames it does decode);
    should the answer itself lie before that margin (a gap in the video), the search is repeated without skipping.
    Times are compared in the stream's pts units (float), not as Fractions, which cost more than the decoding.
    """
    ctx = stream.codec_context
    t_pts = t / float(stream.time_base)
    margin_pts = SKIP_MARGIN / float(stream.time_base)
    for skipping in (True, False):
        ctx.skip_frame = "NONREF" if skipping else "DEFAULT"
        container.seek(max(0, int(t_pts)), stream=stream, backward=True)
        chosen = None
        for frame in _decode_from_here(container, stream, t_pts - margin_pts if skipping else None):
            if keyframes is not None and frame.key_frame and float(frame.pts or 0) not in keyframes:
                keyframes[float(frame.pts or 0)] = thumbnail(frame)
            if chosen is not None and frame.pts is not None and frame.pts > t_pts:
                break
            chosen = frame
        if chosen is None:
            raise MediaError("no_video", f"no video frame decoded near {t:.3f} s")
        if not skipping or chosen.pts is None or chosen.pts >= t_pts - margin_pts:
            return chosen
    raise AssertionError("unreachable")


def _decode_from_here(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                      full_from_pts: float | None):
    """Decode `stream` from the current position; from the first packet presented at or after `full_from_pts` on
    (or from the start, when None) every frame fully."""
    ctx = stream.codec_context
    skipping = full_from_pts is not None
    for packet in container.demux(stream):
        if skipping and (packet.pts is None or packet.pts >= full_from_pts):
            ctx.skip_frame = "DEFAULT"
            skipping = False
        yield from ctx.decode(packet)  # the final empty packet flushes the decoder


def frame_image(frame: av.VideoFrame, short_side: int | None = None) -> Image.Image:
    """A decoded video frame as an RGB image; with `short_side`, scaled (bicubic, antialiased) so that its shorter
    side is `short_side`, in the same swscale pass that converts YUV to RGB (what `ffmpeg -vf scale` does; cheaper than
    converting at full size and resizing afterwards)."""
    if short_side is None:
        return frame.to_image()
    w, h = short_side_size(frame.width, frame.height, short_side)
    return frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_image()


def decode_video(path: str | Path, *, frames: int = 1, min_duration: float = 3.0,
                 short_side: int | None = None, silence_dbfs: float | None = None) -> Clip:
    """Decode an mp4 (or any container FFmpeg reads): centre frame, K evenly spaced frames, the whole audio, and
    unless `silence_dbfs` is None the quality figures (pipeline.shard.figures; silence below `silence_dbfs`).

    Frames are full size, or scaled to `short_side` while being converted (see `frame_image`)."""
    path = Path(path)
    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - every open failure becomes a typed reason
        raise _open_failure(path, exc) from None
    try:
        with container:
            if not container.streams.video:
                raise MediaError("no_video", "no video stream")
            vstream = container.streams.video[0]
            vstream.codec_context.thread_count = 1  # one core per worker: parallelism is across clips
            duration = _duration(container, vstream)
            audio, rate, channels, audio_figures = _decode_audio(container, min_duration, silence_dbfs)
            if duration <= 0:
                duration = audio.size / SAMPLE_RATE
            start = float(vstream.start_time * vstream.time_base) if vstream.start_time is not None else 0.0
            seen: dict[float, np.ndarray] | None = {} if silence_dbfs is not None else None
            centre_frame = frame_at(container, vstream, start + duration / 2, seen)
            centre = frame_image(centre_frame, short_side)
            spaced_frames = [frame_at(container, vstream, start + duration * (k + 0.5) / frames, seen)
                             for k in range(frames)] if frames > 1 else []
            spaced = [frame_image(f, short_side) for f in spaced_frames]
            fps = float(vstream.average_rate) if vstream.average_rate else None
            quality = {}
            if seen is not None:    # motion over the keyframes, the centre and the spaced frames, in time order
                thumbs, count, span = scan_video(container, vstream, seen)
                for f in [centre_frame] + spaced_frames:
                    thumbs.setdefault(float(f.pts or 0), thumbnail(f))
                quality = _clip_figures(audio_figures, [thumbs[pts] for pts in sorted(thumbs)], count, span, centre,
                                        audio)
            return Clip(centre=centre, spaced=spaced, audio=audio, fps=fps, width=int(vstream.width),
                        height=int(vstream.height), sample_rate=rate, channels=channels,
                        duration=round(duration, 6), quality=quality)
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, MemoryError) as exc:
        raise MediaError("corrupt", f"decoding failed: {type(exc).__name__}: {exc}") from None


def _duration(container: av.container.InputContainer, vstream: av.video.stream.VideoStream) -> float:
    if vstream.duration is not None and vstream.time_base is not None:
        return float(vstream.duration * vstream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _frame_sort_key(p: Path) -> tuple:
    return (0, int(p.stem), p.name) if p.stem.isdigit() else (1, 0, p.name)


def decode_extracted(frame_paths: list[Path], audio_path: Path, *, frames: int = 1,
                     min_duration: float = 3.0, silence_dbfs: float | None = None) -> Clip:
    """The extracted layout: JPEG frames of one clip (in time order by name) and its WAV (any rate, any channels).

    Of n frames, the centre one is index (n-1)//2 (SSL-TIE's 125.jpg of 250) and frame k of K is index
    floor((k + 0.5) n / K).
    """
    if not frame_paths:
        raise MediaError("no_video", "no frame images")
    ordered = sorted(frame_paths, key=_frame_sort_key)
    n = len(ordered)

    def load(p: Path) -> Image.Image:
        try:
            with Image.open(p) as im:
                return im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise _open_failure(p, exc) from None

    centre_index = (n - 1) // 2
    spaced_indices = [min(n - 1, int((k + 0.5) * n / frames)) for k in range(frames)] if frames > 1 else []
    centre = load(ordered[centre_index])
    spaced = [load(ordered[i]) for i in spaced_indices]
    try:
        container = av.open(str(audio_path))
    except Exception as exc:  # noqa: BLE001 - every open failure becomes a typed reason
        raise _open_failure(audio_path, exc) from None
    try:
        with container:
            audio, rate, channels, audio_figures = _decode_audio(container, min_duration, silence_dbfs)
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, MemoryError) as exc:
        raise MediaError("corrupt", f"audio decoding failed: {type(exc).__name__}: {exc}") from None
    duration = round(audio.size / SAMPLE_RATE, 6)
    quality = {}
    if silence_dbfs is not None:       # motion over the first, centre and last frames and the spaced ones
        loaded = {centre_index: centre, **dict(zip(spaced_indices, spaced))}
        thumbs = [figures.frame_thumbnail(*np.moveaxis(np.asarray(
            (loaded[i] if i in loaded else load(ordered[i])).convert("YCbCr")), 2, 0))
                  for i in sorted({0, n - 1} | set(loaded))]
        quality = _clip_figures(audio_figures, thumbs, n, duration, centre, audio)
    return Clip(centre=centre, spaced=spaced, audio=audio, fps=None, width=centre.width, height=centre.height,
                sample_rate=rate, channels=channels, duration=duration, quality=quality)


def _clip_figures(audio_figures: dict, thumbs: list[np.ndarray], frame_count: int, seconds: float,
                  centre: Image.Image, audio: np.ndarray) -> dict:
    """All figures of a clip: the audio ones, motion, the frames the video holds and the seconds they span (with
    their rate), and the two hashes."""
    return {**audio_figures, **figures.video_figures(thumbs), "frames_counted": frame_count,
            "video_seconds": round(seconds, 6), "real_fps": round(frame_count / seconds, 4) if seconds > 0 else None,
            "image_hash": figures.image_hash(centre), "audio_hash": figures.audio_hash(audio)}


def short_side_size(w: int, h: int, size: int) -> tuple[int, int]:
    """(width, height) with the shorter side `size` and the aspect ratio kept."""
    if w <= h:
        return size, max(1, round(h * size / w))
    return max(1, round(w * size / h)), size


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    """Resize (antialiased bicubic) so that the shorter side is `size`, keeping the aspect ratio."""
    if min(img.size) == size:
        return img
    return img.resize(short_side_size(*img.size, size), Image.Resampling.BICUBIC)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_audio(audio: np.ndarray, fmt: str) -> bytes:
    """int16 mono samples -> FLAC or WAV bytes (libsndfile writes to a seekable buffer, so headers are complete)."""
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def check_jpeg(data: bytes, size: tuple[int, int]) -> None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            ok = im.size == size and im.mode == "RGB"
    except Exception as exc:  # noqa: BLE001 - any failure to decode is a failed check
        raise MediaError("corrupt", f"encoded JPEG does not decode: {exc}") from None
    if not ok:
        raise MediaError("corrupt", f"encoded JPEG has the wrong size or mode (expected {size} RGB)")


def check_audio(data: bytes, num_samples: int) -> None:
    try:
        decoded, rate = sf.read(io.BytesIO(data), dtype="int16")
    except Exception as exc:  # noqa: BLE001 - any failure to decode is a failed check
        raise MediaError("corrupt", f"encoded audio does not decode: {exc}") from None
    if rate != SAMPLE_RATE or decoded.ndim != 1 or decoded.shape[0] != num_samples:
        raise MediaError("corrupt", f"encoded audio decodes to {decoded.shape} at {rate} Hz, "
                                    f"expected ({num_samples},) at {SAMPLE_RATE} Hz")


def encode_sample(clip: Clip, meta: dict, *, frame_size: int, audio_format: str, jpeg_quality: int
                  ) -> dict[str, bytes]:
    """The members of one webdataset sample (extension -> bytes), every one checked to decode.

    `meta` holds the clip's identity (id, ytid, start, label, class_index, split); the media fields are added here.
    """
    members: dict[str, bytes] = {}
    images = [(IMAGE_EXT, clip.centre)] + [(f"frame{k}.{IMAGE_EXT}", im) for k, im in enumerate(clip.spaced)]
    for ext, im in images:
        small = resize_short_side(im, frame_size)
        data = encode_jpeg(small, jpeg_quality)
        check_jpeg(data, small.size)
        members[ext] = data
    audio = encode_audio(clip.audio, audio_format)
    check_audio(audio, int(clip.audio.size))
    members[audio_format] = audio
    full = dict(meta)
    full.update(fps=clip.fps, width=clip.width, height=clip.height, sample_rate=clip.sample_rate,
                channels=clip.channels, duration=clip.duration, num_samples=int(clip.audio.size))
    if clip.quality:
        full["quality"] = clip.quality
    members[META_EXT] = json.dumps(full, sort_keys=True).encode()
    members[CLASS_EXT] = str(meta["class_index"]).encode()
    return members
