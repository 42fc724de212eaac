"""`score_store`: the content of metrics.json for a map store (eval.store) under an EvalConfig, and the store's
coverage; what `eval.rescore` writes and what `eval.compare` recomputes to pair two evaluations."""
from __future__ import annotations

from pathlib import Path

from eval.errors import EvalError
from eval.metrics import NEGATIVE_KINDS, MetricError, compute_all
from eval.store import Store, read_store


def score_store(store: Store, cfg, distributions: dict | None = None) -> dict:
    """metrics.json's content for `store` under EvalConfig `cfg`; `distributions`, when given, receives every
    bootstrap resample's value of each table column (compute_all)."""
    attrs = store.attrs
    calibration = None
    if cfg.calibration:
        other = read_store(Path(cfg.calibration) / "maps.zarr")
        calibration = {k: other[f"max_{k}"].ravel() for k in NEGATIVE_KINDS if f"max_{k}" in other}
    if cfg.image_embedding not in ("mean", "peak"):
        raise EvalError(f"image_embedding must be mean or peak, got {cfg.image_embedding!r}")
    try:
        metrics = compute_all(
            store["pos"], store["gt"], store.maps_neg, cfg=cfg.metrics,
            image_ids=store["groups"],
            img_emb=store[f"emb_image_{cfg.image_embedding}"], aud_emb=store["emb_audio"],
            retrieval_scores=store["retrieval"], labels=store["labels"], calibration_maxima=calibration,
            distributions=distributions)
    except MetricError as exc:
        raise EvalError(str(exc)) from None
    return {"model": attrs.get("model"), "model_family": attrs.get("model_family", "ssl_san"),
            "train_seed": attrs.get("train_seed"), "testset": attrs.get("testset"),
            "checkpoint": attrs.get("checkpoint"),
            "data": attrs.get("data"), "samples": attrs.get("num_samples"), "seeds": attrs.get("seeds"),
            "gt_kind": attrs.get("gt_kind"), "audio_seconds": attrs.get("audio_seconds"),
            "train_san": attrs.get("train_san"), "testset_notes": attrs.get("notes"),
            "coverage": coverage_of(attrs),
            "image_embedding": cfg.image_embedding, "calibration": cfg.calibration or None, "metrics": metrics}


def coverage_of(attrs: dict) -> dict:
    """The store's coverage (eval.testsets._select): scored / annotated samples, subset, missing, keys digest; a
    store written before coverage was recorded scored every annotated sample."""
    cov = (attrs.get("notes") or {}).get("coverage")
    if cov:
        return cov
    n = attrs.get("num_samples")
    return {"scored": n, "annotated": n, "missing": 0, "subset": None, "keys_sha256": None}
