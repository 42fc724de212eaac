"""SSL-TIE's own way of loading data, kept only as the benchmark's baseline (`python -m pipeline.bench load`).

One JPEG and one WAV file per clip in folders (`frames/{id}.jpg`, `audio/{id}.wav`, `labels.json`), read per sample
in a torch DataLoader with as many workers as cores: PIL decoding + torchvision transforms (pipeline.load.augment),
the audio window + tiling (pipeline.load.features), torchaudio MelSpectrogram(normalized=True) +
TimeMasking/FrequencyMasking (p 0.8) + AmplitudeToDB, as SSL-TIE's datasets/dataloader.py does. `extract_clips`
writes those folders from shards.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import soundfile as sf
import torch
import torchaudio
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.common.atomic import atomic_write_bytes, atomic_write_json
from pipeline.common.procs import default_workers
from pipeline.load import augment, features
from pipeline.load.shards import ShardSet
from pipeline.shard.format import AUDIO_EXTS


def extract_clips(shards: ShardSet, out: Path, progress: bool = True) -> list[tuple[str, int]]:
    """Write every usable sample of `shards` as `frames/{id}.jpg` + `audio/{id}.wav` (PCM 16) under `out`."""
    labels_path = out / "labels.json"
    if labels_path.is_file():
        return [tuple(x) for x in json.loads(labels_path.read_text())]
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    usable = {s.key for s in shards.samples if s.usable}
    items = []
    stream = wds.DataPipeline(wds.SimpleShardList([str(t) for t in shards.tars]), wds.tarfile_to_samples())
    for raw in tqdm(stream, total=len(shards.samples), desc="extract clips", disable=not progress):
        if raw["__key__"] not in usable:
            continue
        meta = json.loads(raw["json"])
        key = str(meta["id"])
        atomic_write_bytes(out / "frames" / f"{key}.jpg", raw["jpg"])
        wave, sr = sf.read(io.BytesIO(next(raw[e] for e in AUDIO_EXTS if e in raw)), dtype="int16")
        buf = io.BytesIO()
        sf.write(buf, wave, sr, format="WAV", subtype="PCM_16")
        atomic_write_bytes(out / "audio" / f"{key}.wav", buf.getvalue())
        items.append((key, int(meta["class_index"])))
    atomic_write_json(labels_path, items)
    return items


class PerFileDataset(Dataset):
    def __init__(self, root: Path, items: list[tuple[str, int]], image_size: int, train: bool,
                 window_seconds: float, clip_seconds: float, audio_window: str):
        self.root, self.items, self.train = root, items, train
        self.transform = augment.image_transform(image_size, train)
        self.window = features.seconds_to_samples(min(window_seconds, clip_seconds))
        self.length = features.seconds_to_samples(clip_seconds)
        self.audio_window = audio_window if train else "center"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=features.SAMPLE_RATE, n_fft=features.N_FFT,
                                                            hop_length=features.HOP, n_mels=features.N_MELS,
                                                            normalized=True)
        self.time_mask = torchaudio.transforms.TimeMasking(time_mask_param=features.TIME_MASK)
        self.freq_mask = torchaudio.transforms.FrequencyMasking(freq_mask_param=features.FREQ_MASK)
        self.to_db = torchaudio.transforms.AmplitudeToDB()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        key, label = self.items[i]
        image = self.transform(Image.open(self.root / "frames" / f"{key}.jpg").convert("RGB"))
        wave, _ = sf.read(self.root / "audio" / f"{key}.wav", dtype="float32")
        wave = features.clip_to_input(torch.from_numpy(wave), self.window, self.length, self.audio_window)
        spec = self.mel(wave).unsqueeze(0)
        if self.train and torch.rand(1).item() < features.SPEC_AUG_P:
            spec = self.freq_mask(self.time_mask(spec))
        return image, self.to_db(spec), label


def build_baseline(root: Path, items: list[tuple[str, int]], *, batch_size: int, image_size: int, train: bool,
                   window_seconds: float, clip_seconds: float, audio_window: str, workers: int = 0) -> DataLoader:
    ds = PerFileDataset(root, items, image_size, train, window_seconds, clip_seconds, audio_window)
    return DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=default_workers(workers))
