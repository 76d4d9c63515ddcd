"""The run summary: one line per model with test AUCs, the gate decision and the registry state."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of registration results (dataset, model, AUCs, decision, version, alias)."""
    header = ("dataset", "model", "test AUC", "gate", "version", "alias")
    lines = [header]
    for row in rows:
        aucs = ", ".join(
            f"{name}={value:.4f}" if isinstance(value, (int, float)) else f"{name}=n/a"
            for name, value in sorted((row.get("test_auc") or {}).items())
        )
        gate = row.get("decision", "?")
        if gate != "promoted" and row.get("reasons"):
            gate = f"{gate}: {'; '.join(row['reasons'])}"
        lines.append(
            (
                row.get("dataset", ""),
                row.get("model", ""),
                aucs or "-",
                gate,
                str(row.get("version", "-")),
                ",".join(row.get("aliases") or []) or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def summarise_run(
    dataset: str, results: list[dict[str, Any]], prepared: dict[str, Any], run_context: dict[str, str]
) -> dict[str, Any]:
    """Log the run's table and return it; models whose branch failed are listed as such."""
    rows = [r for r in results if r]
    table = format_table(rows)
    log.info(
        "run %s of %s (data %s):\n%s", run_context.get("dag_run_id"), dataset, prepared.get("dvc_hash"), table
    )
    promoted = [r["model"] for r in rows if r.get("decision") == "promoted"]
    return {
        "dataset": dataset,
        "dag_run_id": run_context.get("dag_run_id"),
        "dvc_hash": prepared.get("dvc_hash"),
        "registered": rows,
        "promoted": promoted,
        "table": table,
    }
