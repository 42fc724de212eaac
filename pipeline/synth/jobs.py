"""Render the planned items of a synthetic corpus to disk: mp4 clips, VGG-SS frames/wavs, IS3, S4, clean audio.

Each job writes its files atomically and is skipped when all of them already exist, so an interrupted run resumes.
Jobs are independent and picklable: the orchestrator (pipeline.synth) runs them in a process pool.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from pipeline.common.atomic import atomic_write_bytes
from pipeline.synth import scenes, sounds
from pipeline.synth.mp4writer import write_mp4
from pipeline.synth.plan import S4_FRAMES, S4_SECONDS, CleanSpec, ClipSpec, Is3Spec, S4Spec, rng_for, s4_frame_time
from pipeline.synth.scenes import ClassLook

TEST_SR = 16000  # test-set audio: 16 kHz mono, as the evaluation code reads it


def _jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _wav(x: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


@dataclass
class Job:
    """One unit of work: `kind` names what `spec` is; `root` is the corpus folder."""
    kind: str
    root: str
    spec: object
    looks: list[ClassLook]
    seconds: float

    def outputs(self) -> list[Path]:
        root = Path(self.root)
        if self.kind == "clip":
            c: ClipSpec = self.spec
            out = [root / "video" / f"{c.id}.mp4"]
            if c.split == "test":
                out += [root / "testsets/vggss/frames" / f"{c.id}.jpg", root / "testsets/vggss/audio" / f"{c.id}.wav"]
            return out
        if self.kind == "is3":
            s: Is3Spec = self.spec
            d = root / "testsets/is3"
            return [p for stem in s.stems for p in (d / "images" / f"{stem}.jpg", d / "audio_wav" / f"{stem}.wav",
                                                      d / "gt_masks" / f"{stem}.jpg")]
        if self.kind == "s4":
            v: S4Spec = self.spec
            d = root / "testsets/s4"
            return ([d / "visual_frames/test" / v.category / v.name / f"{v.name}_{k}.png" for k in range(1, 6)]
                    + [d / "gt_masks/test" / v.category / v.name / f"{v.name}_{k}.png" for k in range(1, 6)]
                    + [d / "audio_wav/test" / v.category / f"{v.name}.wav"])
        if self.kind == "clean":
            cs: CleanSpec = self.spec
            name = self.looks[cs.cls].is3_name
            return [root / "testsets/is3_clean_audio" / name / f"{name}_{j:03d}.wav" for j in range(len(cs.voices))]
        raise ValueError(f"unknown job kind {self.kind!r}")

    def done(self) -> bool:
        return all(p.exists() for p in self.outputs())


def run_job(job: Job) -> str:
    """Write the job's files (those missing); returns the job kind for progress accounting."""
    {"clip": _clip, "is3": _is3, "s4": _s4, "clean": _clean}[job.kind](job)
    return job.kind


def _clip(job: Job) -> None:
    c: ClipSpec = job.spec
    rng = rng_for(c.seed, 0, 0)
    noise = float(rng.uniform(0.002, 0.012))
    outs = job.outputs()
    if c.split == "test":
        frame_path, wav_path = outs[1], outs[2]
        if not frame_path.exists():
            atomic_write_bytes(frame_path, _jpeg(scenes.render_rgb(c.scene, job.looks)))
        if not wav_path.exists():
            wav = sounds.render(c.voice, TEST_SR, c.seconds, noise=noise, rng=rng_for(c.seed, 1, 0))
            atomic_write_bytes(wav_path, _wav(wav, TEST_SR))
    if not outs[0].exists():  # the mp4 last: its presence marks the clip done
        audio = sounds.to_channels(sounds.render(c.voice, c.sample_rate, c.seconds), c.channels, rng, noise)
        comp = scenes.YuvCompositor(c.scene, job.looks, c.seconds / 2)
        n = int(round(c.seconds * c.fps))
        frame_at, crf = (lambda i: comp.frame(i / c.fps)), 26
        if c.defect == "muted":            # digital silence, or a hiss 80 dB below full scale
            audio = np.zeros_like(audio) if c.seed % 2 else (1e-4 * rng.standard_normal(audio.shape)).astype(np.float32)
        elif c.defect == "clipped":        # driven 12 dB into full scale
            audio = np.clip(audio * 4.0, -1.0, 1.0)
        elif c.defect == "static":         # the centre frame for the whole clip
            still = comp.frame(c.seconds / 2)
            frame_at = lambda i: still  # noqa: E731
        elif c.defect == "duplicate":      # its original's content at another quality: not the same bytes
            crf = 32
        write_mp4(outs[0], c.width, c.height, c.fps, n, frame_at, audio, c.sample_rate, crf=crf)


def _is3(job: Job) -> None:
    s: Is3Spec = job.spec
    img = _jpeg(scenes.render_rgb(s.scene, job.looks))
    paths = job.outputs()
    for t, stem in enumerate(s.stems):
        image_path, wav_path, mask_path = paths[3 * t:3 * t + 3]
        rng = rng_for(s.seed, t, 0)
        x = sounds.render(s.voices[t], TEST_SR, job.seconds, noise=0.006, rng=rng)
        if s.interferers[t] is not None:  # IS3 audio is not clean: a faint sound of a class not in the image
            x = np.clip(x + 0.25 * sounds.render(s.interferers[t], TEST_SR, job.seconds), -1, 1)
        mask = scenes.object_mask(s.scene, job.looks, t)
        atomic_write_bytes(image_path, img)
        atomic_write_bytes(wav_path, _wav(x, TEST_SR))
        atomic_write_bytes(mask_path, _jpeg((mask * 255).astype(np.uint8)))


def _s4(job: Job) -> None:
    v: S4Spec = job.spec
    paths = job.outputs()
    sounding = next(i for i, o in enumerate(v.scene.objects) if o.sounding)
    centre = S4_SECONDS / 2
    for k in range(1, S4_FRAMES + 1):
        t = s4_frame_time(k)
        atomic_write_bytes(paths[k - 1], _png(scenes.render_rgb(v.scene, job.looks, t, centre)))
        atomic_write_bytes(paths[5 + k - 1], _png(scenes.object_mask(v.scene, job.looks, sounding, t, centre)))
    x = sounds.render(v.voice, TEST_SR, S4_SECONDS, noise=0.004, rng=rng_for(v.seed, 0, 0))
    atomic_write_bytes(paths[-1], _wav(x, TEST_SR))


def _clean(job: Job) -> None:
    cs: CleanSpec = job.spec
    for voice, path in zip(cs.voices, job.outputs()):
        atomic_write_bytes(path, _wav(sounds.render(voice, TEST_SR, job.seconds), TEST_SR))
