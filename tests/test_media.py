"""pipeline.shard.media: centre frame choice, 16 kHz anti-aliased audio, typed failure reasons, validated encoding."""
from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pipeline.shard import media
from tests.mediafiles import remux

META = {"id": "x", "ytid": "x", "start": 0, "label": "a", "class_index": 3, "split": "train"}


@pytest.fixture(scope="module")
def clip_path(synth_corpus: Path) -> Path:
    return sorted((synth_corpus / "video").glob("*.mp4"))[0]


def _frame_on_screen(path: Path, t: float) -> np.ndarray:
    """Brute force: decode every frame, keep the last one starting at or before t."""
    with av.open(str(path)) as c:
        chosen = None
        for frame in c.decode(c.streams.video[0]):
            if chosen is not None and frame.time > t:
                break
            chosen = frame
        return np.asarray(chosen.to_image())


def test_centre_and_spaced_frames_are_the_frames_on_screen(clip_path: Path):
    clip = media.decode_video(clip_path, frames=3, min_duration=0.5)
    with av.open(str(clip_path)) as c:
        v = c.streams.video[0]
        duration = float(v.duration * v.time_base)
        start = float(v.start_time * v.time_base)
        assert (clip.width, clip.height) == (v.width, v.height)
    assert np.array_equal(np.asarray(clip.centre), _frame_on_screen(clip_path, start + duration / 2))
    for k, im in enumerate(clip.spaced):
        assert np.array_equal(np.asarray(im), _frame_on_screen(clip_path, start + duration * (k + 0.5) / 3))
    assert np.array_equal(np.asarray(clip.spaced[1]), np.asarray(clip.centre))
    assert clip.audio.dtype == np.int16
    assert abs(clip.audio.size / media.SAMPLE_RATE - clip.duration) < 0.1


def test_scaled_frames_match_a_resize_of_the_full_frame(clip_path: Path):
    full = media.decode_video(clip_path, frames=2, min_duration=0.5)
    small = media.decode_video(clip_path, frames=2, min_duration=0.5, short_side=64)
    for big, little in zip([full.centre, *full.spaced], [small.centre, *small.spaced]):
        assert little.size == media.short_side_size(*big.size, 64) and little.mode == "RGB"
        resized = np.asarray(media.resize_short_side(big, 64), dtype=np.float64)
        assert np.abs(np.asarray(little, dtype=np.float64) - resized).mean() < 3.0  # both antialiased bicubic
    assert np.array_equal(small.audio, full.audio) and (small.width, small.height) == (full.width, full.height)


def test_resampling_is_anti_aliased(tmp_path: Path):
    """A 12 kHz tone in 48 kHz audio must vanish at 16 kHz, not fold back to 4 kHz; a 1 kHz tone stays."""
    rate = 48000
    t = np.arange(4 * rate) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 1000 * t), 0.3 * np.sin(2 * np.pi * 12000 * t)], axis=1)
    sf.write(tmp_path / "a.wav", stereo, rate, subtype="PCM_16")
    Image.new("RGB", (64, 48), (10, 20, 30)).save(tmp_path / "f.jpg")
    clip = media.decode_extracted([tmp_path / "f.jpg"], tmp_path / "a.wav", min_duration=1.0)
    assert (clip.sample_rate, clip.channels) == (rate, 2)
    x = clip.audio.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1 / media.SAMPLE_RATE)
    at = lambda f: spectrum[np.abs(freqs - f) < 20].max()  # noqa: E731
    assert at(4000) < at(1000) * 1e-3  # the alias of 12 kHz would sit at 16 - 12 = 4 kHz
    assert abs(x.size - 4 * media.SAMPLE_RATE) < 64


def test_failure_reasons(tmp_path: Path, clip_path: Path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip_path.read_bytes()[:3000])
    silent = tmp_path / "silent.mp4"
    remux(clip_path, silent, audio=False)
    short = tmp_path / "short.mp4"
    remux(clip_path, short, seconds=1.0)
    cases = {garbage: "unreadable", empty: "unreadable", truncated: "corrupt", silent: "no_audio",
             short: "too_short", tmp_path / "absent.mp4": "unreadable"}
    for path, reason in cases.items():
        with pytest.raises(media.MediaError) as err:
            media.decode_video(path, min_duration=1.5)
        assert err.value.reason == reason, (path.name, err.value.detail)


def test_encode_sample_members_decode(clip_path: Path):
    clip = media.decode_video(clip_path, frames=2, min_duration=0.5)
    for fmt in ("flac", "wav"):
        members = media.encode_sample(clip, META, frame_size=64, audio_format=fmt, jpeg_quality=90)
        assert list(members) == ["jpg", "frame0.jpg", "frame1.jpg", fmt, "json", "cls"]
        with Image.open(io.BytesIO(members["jpg"])) as im:
            assert min(im.size) == 64
            assert abs(im.size[0] / im.size[1] - clip.width / clip.height) < 0.05
        audio, rate = sf.read(io.BytesIO(members[fmt]), dtype="int16")
        assert rate == media.SAMPLE_RATE and np.array_equal(audio, clip.audio)
        assert members["cls"] == b"3"


def test_checks_reject_broken_components(clip_path: Path):
    clip = media.decode_video(clip_path, min_duration=0.5)
    members = media.encode_sample(clip, META, frame_size=32, audio_format="flac", jpeg_quality=90)
    with pytest.raises(media.MediaError, match="JPEG"):
        media.check_jpeg(members["jpg"][: len(members["jpg"]) // 2], (1, 1))
    with pytest.raises(media.MediaError, match="audio"):
        media.check_audio(members["flac"][: len(members["flac"]) // 2], clip.audio.size)


def test_resize_short_side():
    assert media.resize_short_side(Image.new("RGB", (640, 360)), 256).size == (455, 256)
    assert media.resize_short_side(Image.new("RGB", (360, 640)), 256).size == (256, 455)
    assert media.resize_short_side(Image.new("RGB", (320, 240)), 256).size == (341, 256)


def test_extracted_layout_failure_reasons(tmp_path: Path):
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "ok.jpg")
    good = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"not an image" * 10)
    sf.write(tmp_path / "a.wav", np.zeros(2 * media.SAMPLE_RATE), media.SAMPLE_RATE)
    sf.write(tmp_path / "short.wav", np.zeros(media.SAMPLE_RATE // 2), media.SAMPLE_RATE)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF" + b"\x00" * 40)
    cases = {("truncated.jpg", "a.wav"): "corrupt", ("garbage.jpg", "a.wav"): "unreadable",
             ("ok.jpg", "short.wav"): "too_short", ("ok.jpg", "garbage.wav"): "corrupt"}
    for (image, audio), reason in cases.items():
        with pytest.raises(media.MediaError) as err:
            media.decode_extracted([tmp_path / image], tmp_path / audio, min_duration=1.0)
        assert err.value.reason == reason, (image, audio, err.value.detail)
    clip = media.decode_extracted([tmp_path / "ok.jpg"], tmp_path / "a.wav", min_duration=1.0)
    assert clip.audio.size == 2 * media.SAMPLE_RATE and (clip.fps, clip.channels) == (None, 1)


def _ramp_video(path: Path, fmt: str) -> None:
    """4 s at 10 fps, a keyframe every 10 frames; frame i is uniform grey at luma 40 + 4 i; a 440 Hz tone."""
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.options = {"g": "10", "keyint_min": "10", "sc_threshold": "0", "bf": "0", "crf": "10"}
        aus = out.add_stream("aac", rate=16000)
        aus.layout = "mono"
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(64000) / 16000)).astype(np.float32)[None]
        for i in range(40):
            yuv = np.full((72, 64), 128, np.uint8)
            yuv[:48] = 40 + 4 * i
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
        for k in range(0, 64000, 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, k
            for p in aus.encode(af):
                out.mux(p)
        for s in (vs, aus):
            for p in s.encode():
                out.mux(p)


@pytest.mark.parametrize("fmt,keyframes", [("mp4", [0, 20, 30]), ("matroska", [0, 10, 20, 30])])
def test_motion_and_frame_count_from_the_keyframes(tmp_path: Path, fmt: str, keyframes: list[int]):
    """mp4 indexes its frames: the first and last keyframe (found by a seek) join the one decoded on the way to the
    centre frame (frame 20, also the centre); Matroska is read packet by packet: every keyframe. Motion is the largest
    luma step between consecutive sampled frames: 4 levels a frame."""
    path = tmp_path / f"ramp.{fmt}"
    _ramp_video(path, fmt)
    with av.open(str(path)) as c:
        assert (c.streams.video[0].frames > 0) == (fmt == "mp4")
    q = media.decode_video(path, min_duration=1.0, silence_dbfs=-60.0).quality
    assert q["frames_counted"] == 40 and q["video_seconds"] == 4.0 and q["real_fps"] == 10.0
    assert q["sampled_frames"] == len(keyframes)
    step = max(b - a for a, b in zip(keyframes, keyframes[1:])) * 4
    assert abs(q["motion"] - step) <= 1.5, q
    assert media.decode_video(path, min_duration=1.0).quality == {}
