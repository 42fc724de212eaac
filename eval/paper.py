"""The published numbers of the two fully self-supervised SSL-TIE-based models in the SSL-SaN paper's Tables 1-4
(../shared/seeds/001_*.txt), for `python -m eval.report --paper` to print beside measured rows.

Keys follow `compute_all`'s `tables` (docs/METRICS.md). Table 2 lists IS3 as well although its caption names VGG-SS,
IS3+ and S4; Table 3 has VGG-SS and S4 only (IS3 / IS3+ retrieval is in the paper's supplementary material); Table 4
(S4) gives the model trained with all four silence / noise switches (= SSL-SaN's Table 2 row) and one trained with
none (its own row: it is not Table 2's SSL-TIE). Everything is copied from the paper's text as printed.
"""
from __future__ import annotations

T2_KEYS = ("cIoU_Uth", "cIoU_Adap", "AUC_Uth", "AUC_Adap", "pIA_S", "AUCN_S", "pIA_N", "AUCN_N", "pIA_O", "AUCN_O",
           "FLOC", "FAUC")
T3_KEYS = tuple(f"{d}_{m}@{k}" for d in ("I2A", "A2I") for m in ("P", "A") for k in (1, 5, 10))
T4_KEYS = ("cIoU_Uth", "pIA_S", "pIA_N", "pIA_O", "FLOC", "Sep")

_TABLE1 = {  # Magnitude, Alignment, Separability
    ("vggss", "SSL-TIE"): (0.96, 0.37, 0.0606), ("vggss", "SSL-SaN"): (0.93, 0.40, 0.0971),
    ("is3", "SSL-TIE"): (0.98, 0.28, -0.0530), ("is3", "SSL-SaN"): (0.97, 0.31, -0.0327),
    ("is3plus", "SSL-TIE"): (0.99, 0.28, -0.0604), ("is3plus", "SSL-SaN"): (0.97, 0.31, -0.0327),
    ("s4", "SSL-TIE"): (0.93, 0.41, 0.1442), ("s4", "SSL-SaN"): (0.86, 0.47, 0.2479),
}
_TABLE2 = {
    ("vggss", "SSL-TIE"): (27.78, 51.88, 28.23, 48.00, 0.78, 99.16, 0.68, 99.26, 2.50, 97.39, 43.36, 43.90),
    ("vggss", "SSL-SaN"): (29.61, 52.74, 29.97, 48.66, 0.01, 99.99, 0.00, 100.00, 1.72, 98.17, 45.63, 46.05),
    ("is3", "SSL-TIE"): (17.32, 18.43, 18.29, 29.69, 0.49, 99.42, 0.40, 99.53, 3.19, 96.71, 29.47, 30.85),
    ("is3", "SSL-SaN"): (18.87, 18.90, 19.73, 30.28, 0.00, 100.00, 0.00, 100.00, 1.97, 97.87, 31.72, 32.92),
    ("is3plus", "SSL-TIE"): (16.37, 17.93, 17.40, 28.88, 0.49, 99.42, 0.40, 99.53, 3.03, 96.86, 28.09, 29.58),
    ("is3plus", "SSL-SaN"): (19.13, 18.90, 19.94, 30.28, 0.00, 100.00, 0.00, 100.00, 2.09, 97.73, 32.08, 33.21),
    ("s4", "SSL-TIE"): (28.40, 31.24, 28.64, 38.60, 2.90, 97.08, 2.69, 97.25, 1.37, 98.56, 44.00, 44.29),
    ("s4", "SSL-SaN"): (32.76, 33.87, 32.86, 41.11, 0.05, 99.95, 0.00, 100.00, 0.95, 98.96, 49.31, 49.42),
}
_TABLE3 = {
    ("vggss", "SSL-TIE"): (16.25, 14.87, 13.83, 16.25, 35.81, 47.51, 15.12, 14.82, 13.81, 15.12, 35.91, 47.41),
    ("vggss", "SSL-SaN"): (24.61, 22.94, 20.88, 24.61, 48.57, 58.97, 24.49, 22.97, 21.25, 24.49, 46.74, 57.41),
    ("s4", "SSL-TIE"): (73.38, 75.27, 74.92, 73.38, 85.27, 90.00, 66.76, 66.76, 66.69, 66.76, 66.76, 77.03),
    ("s4", "SSL-SaN"): (79.86, 80.81, 81.50, 79.86, 89.59, 92.43, 81.35, 81.38, 81.82, 81.35, 81.49, 87.16),
}
_TABLE4 = {  # S4 ablation rows with their (S, N, L_S, L_N) switches
    "SSL-SaN": ((True, True, True, True), (32.76, 0.05, 0.00, 0.95, 49.31, 0.2479)),
    "no S, N, L_S, L_N": ((False, False, False, False), (31.57, 2.53, 2.49, 1.00, 47.76, 0.2384)),
}
_SWITCHES = ("S", "N", "L_S", "L_N")


def paper_rows(testset: str) -> list[dict]:
    """The paper's rows for `testset`: [{model, train_san, tables: {table1..table4: {column: value}}}]; a table the
    paper does not give for that row is empty."""
    rows = []
    for model in ("SSL-TIE", "SSL-SaN"):
        key = (testset, model)
        if key not in _TABLE1:
            continue
        switches = (model == "SSL-SaN",) * 4
        t4 = _TABLE4[model][1] if testset == "s4" and model in _TABLE4 else ()
        rows.append({"model": f"{model} (paper)", "train_san": dict(zip(_SWITCHES, switches)), "tables": {
            "table1": dict(zip(("Magnitude", "Alignment", "Separability"), _TABLE1[key])),
            "table2": dict(zip(T2_KEYS, _TABLE2[key])),
            "table3": dict(zip(T3_KEYS, _TABLE3.get(key, ()))),
            "table4": dict(zip(T4_KEYS, t4))}})
    if testset == "s4":
        switches, values = _TABLE4["no S, N, L_S, L_N"]
        rows.append({"model": "no S, N, L_S, L_N (paper, Table 4)", "train_san": dict(zip(_SWITCHES, switches)),
                     "tables": {"table4": dict(zip(T4_KEYS, values))}})
    return rows
