"""`EvalConfig`: the options of `python -m eval.run`, also read back from a results folder's config.yaml by
`python -m eval.rescore` (metric options under `metrics.`, the `eval.metrics.MetricConfig`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from eval.metrics import MetricConfig
from eval.offscreen import OFFSCREEN_SEEDS
from pipeline.common.config import check_range, require

# What scoring a store writes (eval.rescore), and what an eval.run results folder holds: the store besides. A command
# that replaces such a folder's files refuses one holding anything else (pipeline.common.outputs.replacing).
SCORE_FILES = ("config.yaml", "metrics.json", "tables.md", "tables.csv", "maxima.png", "overlays_*.png")
RESULT_FILES = ("maps.zarr", *SCORE_FILES)


@dataclass
class EvalConfig:
    model: str = "ssl_san"         # model family, eval.models.MODELS (ssl_san: this project's checkpoints)
    ckpt: str = ""                 # ssl_san: step or run directory; others: their .pth, or eval.convert's folder
    testset: str = ""              # vggss | is3 | is3plus | s4
    data: str = ""                 # the test set folder
    out: str = ""                  # results/NAME
    name: str = ""                 # model name in tables; empty: the training run's folder name
    gt: str = "auto"               # auto (boxes on VGG-SS, masks elsewhere, as the paper) | box | mask
    subset: str = ""               # file of sample / group ids to score (SSL-TIE's test_vggss_4911.txt...); "": all
    allow_missing: bool = False    # score the samples whose files are there instead of refusing a set missing some
    seeds: list[int] = field(default_factory=lambda: list(OFFSCREEN_SEEDS))  # one evaluation pass per seed
    audio_seconds: float = 0.0     # 0: the test set's length (10 s VGG-SS / IS3 / IS3+, 5 s S4)
    image_size: int = 224
    silence_db: bool | None = None  # negatives through dB? null (default): as the checkpoint was trained
    noise_db: bool | None = None    # (its san.silence_db / san.noise_db); false: the group's SSL-TIE evaluation
    # convention (REFERENCE.md C). Evaluating a model on negatives shaped unlike the ones it learned from measures the
    # input shift, not the training; every checkpoint of one recipe family shares the same defaults, so rows compare.
    batch_size: int = 32
    num_workers: int = 2
    device: str = "auto"           # auto (cuda if available) | cpu | cuda
    tf32: bool = False             # TF32 convolutions / matmuls on the GPU: faster, but the maps are no longer fp32
    retrieval_chunk: int = 1024    # audios per block of the retrieval matrix
    overlay_samples: int = 4       # samples whose images are kept in the store for the overlay figure
    image_embedding: str = "mean"  # global image embedding for Table 1 / cosine retrieval: mean | peak (see store)
    calibration: str = ""          # results folder whose negative maxima set tau_U (empty: this test set's)
    metrics: MetricConfig = field(default_factory=MetricConfig)

    def __post_init__(self) -> None:
        """Values no evaluation can use are refused as one ConfigError listing each key."""
        p: list[str] = []
        check_range(p, "image_size", self.image_size, low=16)
        check_range(p, "batch_size", self.batch_size, low=1)
        check_range(p, "num_workers", self.num_workers, low=0)
        check_range(p, "audio_seconds", self.audio_seconds, low=0)
        check_range(p, "retrieval_chunk", self.retrieval_chunk, low=1)
        check_range(p, "overlay_samples", self.overlay_samples, low=0)
        if not self.seeds:
            p.append("seeds: give at least one evaluation pass seed")
        require(p)
