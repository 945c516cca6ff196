"""Robustness reports: the JSON record of an evaluation, and Markdown tables people can paste."""

from __future__ import annotations

import datetime
import platform
from typing import Dict, List, Sequence

import tensorflow as tf

from pcl_tf import io_utils

LABELS = {"fgsm": "FGSM", "bim": "BIM", "cw": "C&W", "mim": "MIM", "pgd": "PGD"}


def make_report(
    *, workdir: str, config, threat_model: str, source: str, eps: float, methods: Sequence[str],
    params: Dict[str, Dict], summary: Dict, seed: int,
) -> Dict:
    """One evaluation of one model at one ε, with everything needed to rerun and compare it."""
    attacks = {}
    for name in methods:
        attacks[name] = {"params": params[name], **summary["attacks"][name]}
    return {
        "model": {
            "workdir": workdir,
            "dataset": config.dataset,
            "architecture": config.model,
            "pcl_branches": config.pcl.branches,
            "pcl_mode": config.pcl.mode if config.pcl.branches else None,
        },
        "threat_model": threat_model,
        "source_model": source,
        "eps": eps,
        "num_examples": summary["num_examples"],
        "clean_accuracy": summary["clean_accuracy"],
        "attacks": attacks,
        "worst_case": summary["worst_case"],
        "seed": seed,
        "environment": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.node(),
            "tensorflow": tf.__version__,
        },
    }


def markdown_table(reports: List[Dict]) -> str:
    """One row per report: model, threat, ε, clean, each attack's robust accuracy, worst case (%)."""
    methods: List[str] = []
    for r in reports:
        methods += [m for m in r["attacks"] if m not in methods]
    header = ["model", "threat", "ε", "n", "clean"] + [LABELS.get(m, m) for m in methods] + ["worst case"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in reports:
        name = r["model"]["workdir"]
        cells = [name, r["threat_model"], f"{r['eps']:g}", str(r["num_examples"]), _pct(r["clean_accuracy"])]
        cells += [_pct(r["attacks"][m]["robust_accuracy"]) if m in r["attacks"] else "–" for m in methods]
        cells.append(_pct(r["worst_case"]["robust_accuracy"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def write(path_stem: str, reports: List[Dict]) -> None:
    """Writes ``<stem>.json`` (the list of reports) and ``<stem>.md`` (the table), atomically."""
    io_utils.write_json_atomic(path_stem + ".json", reports)
    io_utils.write_text_atomic(path_stem + ".md", markdown_table(reports))
