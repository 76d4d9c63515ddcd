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
            # only what stopped it: the failed checks ("floors: fail: ..."), else every reason given
            failed = [r.replace(": fail: ", ": ", 1) for r in row["reasons"] if ": fail: " in r]
            gate = f"{gate}: {'; '.join(failed or row['reasons'])}"
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
    dataset: str,
    results: Any,
    prepared: dict[str, Any],
    run_context: dict[str, str],
    models: list[str] | None = None,
) -> dict[str, Any]:
    """Log the run's table and return it; requested ``models`` without a registration (a task of their
    branch failed) are listed as failed."""
    # the mapped register tasks' results: a sequence, or (one mapped instance) the single dict itself
    if isinstance(results, dict):
        results = [results]
    rows = [r for r in (results or []) if isinstance(r, dict)]
    done = {r.get("model") for r in rows}
    failed = [m for m in (models or []) if m not in done]
    failed_rows = [
        {
            "dataset": dataset,
            "model": m,
            "decision": "failed",
            "reasons": ["no registration: a task of this model failed (see its log)"],
        }
        for m in failed
    ]
    table = format_table(rows + failed_rows)
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
        "failed": failed,
        "table": table,
    }
