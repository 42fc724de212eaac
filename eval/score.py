"""`python -m eval.score MAPS.npz|MAPS.zarr --out DIR`: score any method's maps with the project's metric code.

Reads per-sample raw maps (positive, silence, noise, offscreen; any h x w), ground-truth masks or boxes, and optional
embeddings, scores and labels (the layout is in docs/SCORE_FORMAT.md), runs `eval.metrics.compute_all`, and writes
DIR/metrics.json (every number, with the bootstrap intervals of Tables 1-4 over the `groups`, else over samples;
NaN written as null) and DIR/config.yaml (the resolved MetricConfig). Options:
`--config FILE` and trailing `key=value` overrides of MetricConfig (e.g. `tau=0.3338`), `--calibration FILE` to take
tau_U from the negative maps of another file (e.g. VGG-SS when scoring IS3).
"""
from __future__ import annotations

import json
import math
import sys
import zipfile
from pathlib import Path

import numpy as np

from eval.errors import EvalError
from eval.metrics import NEGATIVE_KINDS, MetricConfig, MetricError, compute_all
from eval.metrics.embeddings import max_map_scores, pooled_visual_embedding
from eval.metrics.gt import masks_from_boxes
from eval.store import check_integrity
from pipeline.common.atomic import atomic_write_text
from pipeline.common.cli import Parser, run_cli
from pipeline.common.config import load_config, save_config
from pipeline.common.outputs import replacing

ARRAYS = ("pos", *NEGATIVE_KINDS, "gt", "boxes", "boxes_px", "keys", "groups", "labels",
          "emb_image", "emb_image_mean", "emb_audio", "retrieval", "vis_maps")


def read_maps(path: str | Path) -> dict[str, np.ndarray]:
    """The known arrays of an .npz file or a .zarr store (a folder), as numpy arrays."""
    path = Path(path)
    if not path.exists():
        raise EvalError(f"{path}: no such file or folder")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in ARRAYS if k in z.files}
        if path.suffix == ".zarr":
            import zarr

            group = zarr.open_group(str(path), mode="r")
            if group.attrs.get("complete") is False:
                raise EvalError(f"{path}: the store is marked incomplete (its evaluation did not finish)")
            if "format" in group.attrs:      # an eval.run store: proven intact before it is read
                check_integrity(path, dict(group.attrs))
            names = set(group.array_keys())
            return {k: np.asarray(group[k][...]) for k in ARRAYS if k in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise EvalError(f"{path}: cannot read maps: {exc or type(exc).__name__}") from None
    raise EvalError(f"{path}: expected a .npz file or a .zarr store")


def inputs_from_arrays(arrays: dict[str, np.ndarray], size: int, where: str) -> dict:
    """Keyword arguments of compute_all from the arrays of a maps file."""
    if "pos" not in arrays:
        raise EvalError(f"{where}: no 'pos' array (positive maps [N, h, w])")
    given = [k for k in ("gt", "boxes", "boxes_px") if k in arrays]
    if len(given) != 1:
        raise EvalError(f"{where}: give exactly one of 'gt', 'boxes', 'boxes_px' (found {given or 'none'})")
    try:
        if "gt" in arrays:
            gt = arrays["gt"]
        else:
            boxes = np.asarray(arrays[given[0]], dtype=np.float64)
            inverted = np.argwhere((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])) \
                if boxes.ndim == 3 and boxes.shape[-1] == 4 else np.zeros((0, 2), int)
            if len(inverted):
                i, j = (int(v) for v in inverted[0])
                raise EvalError(f"{where}: {given[0]}: box {j} of sample {i} {boxes[i, j].tolist()} has x2 < x1 or "
                                f"y2 < y1 ({len(inverted)} such boxes); boxes are [x1, y1, x2, y2]")
            gt = masks_from_boxes(boxes, size, normalized=given[0] == "boxes")
    except ValueError as exc:
        raise EvalError(f"{where}: {given[0]}: {exc}") from None
    out = {"maps_pos": arrays["pos"], "gt": gt,
           "maps_neg": {k: arrays[k] for k in NEGATIVE_KINDS if k in arrays}}
    names = {"groups": "image_ids", "labels": "labels", "emb_audio": "aud_emb", "retrieval": "retrieval_scores",
             "emb_image_mean": "img_emb", "emb_image": "img_emb"}      # emb_image wins over emb_image_mean
    for name, arg in names.items():
        if name in arrays:
            out[arg] = arrays[name]
    if "vis_maps" in arrays:
        vis = arrays["vis_maps"]
        if "img_emb" not in out:
            out["img_emb"] = pooled_visual_embedding(vis)
        if "retrieval_scores" not in out and "aud_emb" in out:
            out["retrieval_scores"] = max_map_scores(vis, out["aud_emb"])
    return out


def calibration_maxima(path: str | Path) -> dict[str, np.ndarray]:
    """Native-resolution maxima of every negative map in another maps file."""
    arrays = read_maps(path)
    maxima = {}
    for kind in NEGATIVE_KINDS:
        if kind in arrays:
            a = np.asarray(arrays[kind], dtype=np.float64)
            maxima[kind] = a.reshape(-1, a.shape[-2] * a.shape[-1]).max(axis=1)
    if not maxima:
        raise EvalError(f"{path}: no negative maps ({', '.join(NEGATIVE_KINDS)}) to calibrate tau_U on")
    return maxima


def jsonable(obj):
    """Plain JSON types; NaN and inf become null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m eval.score", description=__doc__.split("\n\n")[0])
    ap.add_argument("maps", help="MAPS.npz or MAPS.zarr (docs/SCORE_FORMAT.md)")
    ap.add_argument("--out", required=True, help="output folder for metrics.json and config.yaml")
    ap.add_argument("--config", help="YAML file of MetricConfig options")
    ap.add_argument("--calibration", help="another maps file whose negative maps set tau_U")
    ap.add_argument("overrides", nargs="*", help="MetricConfig overrides key=value")
    args = ap.parse_intermixed_args(argv)
    cfg = load_config(MetricConfig, args.config, args.overrides)
    cfg.progress = True
    try:
        cfg.check()
        inputs = inputs_from_arrays(read_maps(args.maps), cfg.size, args.maps)
        calib = calibration_maxima(args.calibration) if args.calibration else None
        result = compute_all(cfg=cfg, calibration_maxima=calib, **inputs)
    except MetricError as exc:
        raise EvalError(str(exc)) from None
    gt = np.asarray(inputs["gt"])
    empty = np.flatnonzero(gt.reshape(len(gt), -1).max(1) == 0).tolist() if len(gt) else []
    if empty:
        print(f"warning: {args.maps}: {len(empty)} samples have an empty ground truth (first: sample {empty[0]}); "
              f"they score IoU 0 at every threshold (listed in metrics.json input.empty_gt)", file=sys.stderr)
    result["input"] = {"maps": str(args.maps), "calibration": args.calibration, "empty_gt": empty}
    out = Path(args.out)
    with replacing(out, ("config.yaml", "metrics.json")) as stage:
        save_config(cfg, stage / "config.yaml")
        atomic_write_text(stage / "metrics.json", json.dumps(jsonable(result), indent=1) + "\n")
    t2 = result["tables"]["table2"]
    print(f"wrote {out / 'metrics.json'}: cIoU_Uth {t2['cIoU_Uth']:.2f}  cIoU_Adap {t2['cIoU_Adap']:.2f}  "
          f"FLOC {t2['FLOC']:.2f}  FAUC {t2['FAUC']:.2f}  (tau_U {result['thresholds']['tau_U']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
