"""Typed training configuration (`TrainConfig`), filled by `pipeline.common.config` from a YAML recipe plus overrides.

Every choice REFERENCE.md leaves open ([DECIDE]) is an option here with its default and the reason written beside it.
Recipes: `trainer/configs/ssl_san.yaml` (the paper), `ssl_tie.yaml` (baseline, no silence/noise),
`cpu_demo.yaml` (small width / image / audio for a CPU).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.common.config import check_range, require
from pipeline.load.contract import LoaderConfig


@dataclass
class ModelConfig:
    width: int = 64  # channels of the ResNet-18 stem; 64 is SSL-TIE's model (512-d features), smaller for CPU demos


@dataclass
class ContrastiveConfig:
    """LVS tri-map contrastive loss as SSL-TIE computes it (REFERENCE B.2)."""
    epsilon: float = 0.65  # positive-mask threshold (eps+)
    epsilon2: float = 0.4  # tri-map negative-mask threshold (eps-)
    tau: float = 0.03  # sigmoid sharpness of the soft masks
    temperature: float = 0.07  # logits = scores / temperature
    trimap: bool = True  # hard-negative mask 1 - sigmoid((A - eps-)/tau); false: 1 - positive mask
    hard_negative: bool = True  # append the same-pair background score (SSL-TIE's --Neg)
    diagonal: Literal["ssl_tie", "exclude"] = "ssl_tie"
    # ssl_tie: easy-negative matrix multiplied by (1 - 100 I), i.e. the diagonal times -99 (SSL-TIE's quirk);
    # exclude: the diagonal is dropped from the easy negatives (logits one shorter).


@dataclass
class SaNConfig:
    """Silence and noise (the paper's section 3.1 and Table 4 switches)."""
    silence_negative: bool = True  # S: the silence score of each image is an extra negative logit
    noise_negative: bool = True  # N: the noise score of each image is an extra negative logit
    silence_map_loss: bool = True  # L_S = ||S(a_S, v_j)||^2 added with weight lambda_sn
    noise_map_loss: bool = True  # L_N = ||S(a_N_j, v_j)||^2 added with weight lambda_sn
    lambda_sn: float = 1.0  # weight of L_S + L_N (the paper's best)
    reduction: Literal["mean", "sum"] = "mean"
    # over the h x w map, then mean over images. The paper writes a squared L2 norm (a sum); measured on synthetic
    # data (notes/LEARNING.md) the sum starts ~10x larger than the contrastive loss and collapsed the maps, the mean
    # learned: default mean.
    transformed_view: bool = True
    # also apply S/N negatives and L_S/L_N to the equivariance view (its logits use the same audio); the SaN term is
    # then averaged over the two views like the contrastive loss, so lambda_sn keeps its scale.
    silence_db: bool = False  # silence log-mel: all zeros (false, the group's eval convention) or -100 dB (true)
    noise_db: bool = True  # noise: N(0, 1) waveform (the paper's sigma = 1), a fresh draw per image and step
    # noise log-mel through dB like positives (true) or raw mel power (false, the group's eval convention). Raw power of
    # N(0,1) noise (~750) dominates the shared BatchNorm statistics and collapsed learning (notes/LEARNING.md): true.
    silence_per_sample: bool = False
    # silence is one constant input: encode it once per batch (false) or once per image (true, B copies in the
    # audio batch, which changes the BatchNorm statistics' silence share from 1/(2B+1) to 1/3)

    @property
    def enabled(self) -> bool:
        return self.silence_negative or self.noise_negative or self.silence_map_loss or self.noise_map_loss

    @property
    def uses_silence(self) -> bool:
        return self.silence_negative or self.silence_map_loss

    @property
    def uses_noise(self) -> bool:
        return self.noise_negative or self.noise_map_loss


@dataclass
class EquivarianceConfig:
    """SSL-TIE's transformation equivariance (REFERENCE B.3)."""
    enabled: bool = True  # false: one view, loss = L_cl (+ SaN)
    max_rotation: int = 30  # integer angle ~ U{-max..max} per sample, degrees
    scales: list[float] = field(default_factory=lambda: [0.5, 1.0])  # one value per batch, uniform choice
    flip_prob: float = 0.5  # one horizontal-flip decision per batch
    double_shrink: bool = True
    # SSL-TIE warps with the scale inside the rotation matrix AND resizes the output by the scale (content shrunk
    # twice, 7x7 maps at scale 0.5); false: the warp only rotates and the resize alone scales.
    weight: float = 1.0  # lambda_eq


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-4  # Adam's L2 penalty (torch.optim.Adam weight_decay), as SSL-TIE
    batch_size: int = 32
    # GLOBAL batch per optimizer step; each process gets batch_size / (processes x grad_accum) samples per micro-step
    grad_accum: int = 1
    grad_clip: float = 0.0  # max global grad norm; 0 = off (SSL-TIE does not clip)
    plateau_metric: str = "val/loss"  # a key of the validation metrics
    plateau_mode: Literal["min", "max"] = "min"
    plateau_factor: float = 0.1
    plateau_patience: int = 5  # validation rounds without improvement before the lr is multiplied by the factor
    min_lr: float = 1e-7


@dataclass
class DataConfig:
    source: Literal["shards", "random"] = "shards"  # random: seeded random tensors (benchmarks, loop tests)
    random_image_size: int = 224
    random_frames: int = 670  # log-mel frames of the random audio (670 = 10 s at 16 kHz)
    random_batches: int = 100  # random batches per epoch and process
    shard_dir: str = "shards/vggsound"  # output of pipeline.shard (train-*.tar, val-*.tar, manifest.json)
    train_split: str = "train"
    val_split: str = "val"  # held-out training clips: model selection and the plateau scheduler, never the test set;
    # "" = no validation (the plateau scheduler then never steps and no best checkpoint is marked)
    synth_json: str = ""  # vggsound/synth.json: its object boxes add pointing accuracy to the validation metrics
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    # LoaderConfig options (pipeline.load.contract: backend, device, image_size, clip/window seconds, augment...);
    # loader.batch_size is ignored: the trainer sets it to the per-process micro-batch (optim.batch_size)


@dataclass
class TrainConfig:
    name: str = "ssl_san"
    output_root: str = "runs"  # the run writes runs/<name>/
    seed: int = 4  # SSL-TIE's seed
    seeds: list[int] = field(default_factory=list)  # one run per seed into runs/<name>/seed-<k>/ (overrides seed)
    epochs: int = 100
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast for the encoders; the loss block is always fp32.
    # fp16 uses a grad scaler on GPUs; on the CPU accelerate has no fp16 autocast and runs fp32 (bf16 works there)
    compile: bool = False  # torch.compile the two encoders
    channels_last: bool = False  # NHWC tensors (GPU tensor cores); on the CPU, model.width=4 with it crashed torch
    # 2.11's oneDNN convolution backward (segfault, seen here); widths 8-64 ran
    deterministic: bool = False  # torch.use_deterministic_algorithms; resume then repeats a run exactly on the CPU
    gather_features: bool = True
    # all-gather the audio vectors across processes (with gradients): every image sees the negatives of the GLOBAL
    # batch, so N processes x b/N train the same objective as one process with batch b (BatchNorm statistics stay
    # per process). false: each process only contrasts within its own micro-batch.
    encode_audio_once: bool = True
    # the two image views share their audio: encode it once per step (false: once per view, as SSL-TIE's loop does,
    # which costs ~40% more compute; kept for the baseline benchmark)
    log_every: int = 10  # optimizer steps between log lines
    val_every: int = 500  # optimizer steps between validations (and at the end of every epoch); 0 = per epoch only
    val_batches: int = 0  # limit validation to this many batches (0 = the whole val split)
    val_at_start: bool = False  # validate the untrained model first (logged at step 0): the baseline of the curves
    ckpt_every: int = 1000  # optimizer steps between checkpoints (and at the end of every epoch)
    keep_checkpoints: int = 3  # newest step directories kept, besides the best one
    model: ModelConfig = field(default_factory=ModelConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    san: SaNConfig = field(default_factory=SaNConfig)
    equivariance: EquivarianceConfig = field(default_factory=EquivarianceConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        """Values no run can use are refused here, as one ConfigError listing each key, not as a crash later."""
        p: list[str] = []
        for key, value, low, low_open in [
                ("optim.lr", self.optim.lr, 0, True), ("optim.weight_decay", self.optim.weight_decay, 0, False),
                ("optim.batch_size", self.optim.batch_size, 1, False),
                ("optim.grad_accum", self.optim.grad_accum, 1, False),
                ("optim.grad_clip", self.optim.grad_clip, 0, False), ("optim.min_lr", self.optim.min_lr, 0, False),
                ("optim.plateau_factor", self.optim.plateau_factor, 0, True),
                ("optim.plateau_patience", self.optim.plateau_patience, 0, False),
                ("model.width", self.model.width, 1, False), ("epochs", self.epochs, 1, False),
                ("max_steps", self.max_steps, 0, False), ("log_every", self.log_every, 1, False),
                ("val_every", self.val_every, 0, False), ("val_batches", self.val_batches, 0, False),
                ("ckpt_every", self.ckpt_every, 0, False), ("keep_checkpoints", self.keep_checkpoints, 1, False),
                ("contrastive.temperature", self.contrastive.temperature, 0, True),
                ("contrastive.tau", self.contrastive.tau, 0, True),
                ("data.loader.batch_size", self.data.loader.batch_size, 1, False),
                ("data.loader.image_size", self.data.loader.image_size, 16, False),
                ("data.loader.clip_seconds", self.data.loader.clip_seconds, 0, True),
                ("data.loader.window_seconds", self.data.loader.window_seconds, 0, True),
                ("data.loader.workers", self.data.loader.workers, 0, False)]:
            check_range(p, key, value, low=low, low_open=low_open)
        if len(set(self.seeds)) != len(self.seeds):
            p.append(f"seeds: each seed once, got {self.seeds!r}")
        if self.optim.plateau_factor >= 1:
            p.append(f"optim.plateau_factor: expected a factor < 1, got {self.optim.plateau_factor!r}")
        require(p)


# Keys that steer a run without changing what it learns: a resumed run may change them freely.
RUN_CONTROL = ("name", "output_root", "seeds", "epochs", "max_steps", "log_every", "val_every", "val_batches",
               "val_at_start", "ckpt_every", "keep_checkpoints", "compile", "channels_last", "deterministic",
               "data.shard_dir", "data.synth_json", "data.loader.workers", "data.loader.device")


def recipe_differences(saved: dict, given: dict) -> list[str]:
    """`key saved -> given` for every recipe key (dotted; RUN_CONTROL excepted) whose value differs between two
    resolved configs as `pipeline.common.config.to_dict` writes them."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out
    a, b = flat(saved), flat(given)
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in RUN_CONTROL and a.get(k) != b.get(k)]
