"""Generate the synthetic VGGSound-like corpus: `python -m pipeline.synth --out vggsound/ [--clips N] [--seconds S]`.

Options are `SynthConfig` fields (pipeline.synth.corpus), as flags, from `--config FILE`, or as `key=value`.
"""
from __future__ import annotations

from pipeline.common.cli import Parser
from pipeline.common.config import load_config
from pipeline.synth.corpus import SynthConfig, SynthError, generate


def parse_args(argv: list[str] | None) -> SynthConfig:
    p = Parser(prog="python -m pipeline.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML file of SynthConfig fields")
    p.add_argument("--out", help="output folder (default vggsound)")
    p.add_argument("--clips", type=int, help="number of mp4 clips (default 300)")
    p.add_argument("--seconds", type=float, help="clip length in seconds (default 10)")
    p.add_argument("--classes", type=int, help="number of classes (default 10)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--workers", type=int, help="parallel processes (default 0 = all cores)")
    p.add_argument("--test-fraction", dest="test_fraction", type=float, help="share of clips in split test")
    p.add_argument("--offscreen-fraction", dest="offscreen_fraction", type=float,
                   help="share of training clips whose sounding class is not in view")
    p.add_argument("--is3-images", dest="is3_images", type=int, help="IS3 images (2 samples each)")
    p.add_argument("--s4-videos", dest="s4_videos", type=int, help="AVSBench-S4 test videos")
    p.add_argument("--clean-per-class", dest="clean_per_class", type=int, help="clean IS3+ recordings per class")
    p.add_argument("--defects", type=int, help="plant this many muted, static, clipped and duplicate training clips "
                   "each (default 0), recorded in synth.json")
    p.add_argument("overrides", nargs="*", help="key=value overrides of SynthConfig fields")
    a = p.parse_args(argv)
    flags = [f"{k}={v}" for k, v in vars(a).items() if k not in ("config", "overrides") and v is not None]
    return load_config(SynthConfig, a.config, list(a.overrides) + flags)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        out = generate(cfg)
    except OSError as exc:  # an output folder that cannot be written (permissions, full disk)
        raise SynthError(f"{exc.filename or 'output folder'}: {exc.strerror or exc}") from None
    print(f"wrote {cfg.clips} clips and the test sets to {out}")
    return 0
