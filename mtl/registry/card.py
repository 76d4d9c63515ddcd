"""Texts a registered model carries: what it predicts (description), and a short Markdown model card."""

from __future__ import annotations

from typing import Any

from mtl.datasets import get_dataset
from mtl.tracking import lineage

# what each output column of a served model means
OUTPUT_MEANINGS = {
    "click": "P(click) of an impression (pCTR)",
    "purchase": "P(purchase | click) (pCVR)",
    "ctcvr": "P(click and purchase) of an impression (pCTCVR)",
    "income": "P(income above $50,000)",
    "marital": "P(never married)",
    "label": "P(the user joins the campaign's audience) (look-alike score)",
}


def predicts(outputs: list[str]) -> str:
    return "; ".join(f"p_{o} = {OUTPUT_MEANINGS.get(o, f'P({o})')}" for o in outputs)


def model_description(dataset: str, model: str, outputs: list[str], columns: list[str]) -> str:
    """The registered model's description: what it predicts from what, and how champions are chosen."""
    title = get_dataset(dataset).title
    shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
    return (
        f"`{model}` trained on {title}. Predicts {predicts(outputs)}. "
        f"Input: a DataFrame of raw feature columns as in the source data ({shown}); unseen values map "
        "to the unknown id. Output: one probability column per output. Alias `champion` = the version "
        "that passed the promotion gate (floors, no regression, sanity); `challenger` = the newest version."
    )


def model_card(
    name: str, version: str, run: Any, decision: dict[str, Any], outcome: str, outputs: list[str]
) -> str:
    """A short Markdown card: model, data, metrics, gate decision."""
    tags, metrics = run.data.tags, run.data.metrics
    rows = [
        f"| {key} | {value:.4f} |"
        for key, value in sorted(metrics.items())
        if key.startswith(("test", "best_valid")) and key.endswith(("_auc", "_gauc", "_logloss", "pct"))
    ]
    checks = [
        f"- **{c['name']}**: {'pass' if c['passed'] else 'FAIL'} -- {c['reason']}" for c in decision["checks"]
    ]
    return "\n".join(
        [
            f"# {name} version {version}",
            "",
            f"**Decision: {outcome}.**",
            "",
            "## Model",
            f"- model: `{tags.get('mtl.model')}`, training run `{run.info.run_id}`",
            f"- predicts: {predicts(outputs)}",
            f"- code: git `{tags.get(lineage.TAG_GIT_COMMIT)}` (dirty: {tags.get(lineage.TAG_GIT_DIRTY)})",
            f"- seed: {tags.get('mtl.seed')}, device: {tags.get('mtl.training.device', 'n/a')}",
            "",
            "## Data",
            f"- dataset: {tags.get(lineage.TAG_DATASET)} (source: {tags.get(lineage.TAG_SOURCE)})",
            f"- prepared data: content hash `{tags.get(lineage.TAG_CONTENT_HASH)}` (splits and encoders, "
            "as `mtl prepare` and `mtl registry list` show it); DVC md5 "
            f"`{tags.get(lineage.TAG_DVC_HASH)}` (the whole folder with metadata.json, as in dvc.lock)",
            f"- pipeline run: {tags.get(lineage.TAG_DAG_RUN_ID) or tags.get('mtl.pipeline_run_id')}",
            "",
            "## Metrics",
            "| metric | value |",
            "|---|---|",
            *rows,
            "",
            "## Gate",
            *checks,
            "",
        ]
    )
