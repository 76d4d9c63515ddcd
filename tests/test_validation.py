"""Two severities of expectations (critical stops, warning reports) and drift against the previous
prepared version: in the summary JSON, the Data Docs, the log, metadata.json and the training run."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from mtl import paths, pipeline
from mtl.config import load_params
from mtl.datasets import expectations as ex
from mtl.datasets.prepared import DatasetMetadata, FeatureSchema, SplitInfo, load_metadata
from mtl.errors import DataValidationError
from mtl.validation import Check, SuiteRunner, drift_changes, drift_log_record, drift_over, profile
from tests.support.samples import VALID_30, write_aliccp_tokens

LABELS = pd.DataFrame({"click": [0, 1, 1, 1], "purchase": [0, 0, 1, 1]})


def checks() -> Check:
    """Labels that are valid (critical expectations pass) but click-heavy (a warning fails)."""
    expectations = [
        *ex.binary_labels(["click", "purchase"]),
        *ex.funnel(["click", "purchase"]),
        *ex.warning([ex.between("click", high=0.5, mostly=0.5)]),  # 3 of 4 clicks: too many
    ]
    return Check("labels", LABELS, ex.build(expectations), source="labels.csv")


def test_a_failed_warning_is_reported_logged_and_shown_but_does_not_stop(tmp_path, caplog):
    runner = SuiteRunner("demo.raw", tmp_path / "report")
    runner.run(checks())
    with caplog.at_level(logging.WARNING, logger="mtl.validation"):
        report = runner.finish()
    assert report.success
    assert report.failures == []
    assert len(report.warnings) == 1
    assert "labels (labels.csv): expect_column_values_to_be_between(click) failed" in report.warnings[0]
    summary = json.loads(report.summary_path.read_text())
    assert summary["success"] is True
    assert summary["warnings"] == report.warnings
    assert summary["statistics"]["warnings"] == 1
    assert summary["statistics"]["critical_failures"] == 0
    severities = {(e["expectation"], e["severity"], e["success"]) for e in summary["expectations"]}
    assert ("expect_column_values_to_be_between", "warning", False) in severities
    assert ("expect_column_pair_values_a_to_be_greater_than_b", "critical", True) in severities
    assert any("data warning" in r.message and "(click)" in r.message for r in caplog.records)
    docs = " ".join(p.read_text() for p in (tmp_path / "report" / "docs").rglob("*.html"))
    assert "Severity: warning" in docs
    assert "Severity: critical" in docs


def test_fail_on_warning_turns_a_warning_into_a_stop(tmp_path):
    runner = SuiteRunner("demo.raw", tmp_path / "report")
    runner.run(checks())
    with pytest.raises(
        DataValidationError, match=r"1 of \d+ expectations failed \(warnings included"
    ) as error:
        runner.finish(fail_on_warning=True)
    summary = json.loads(Path(error.value.report_path).read_text())
    assert summary["success"] is False
    assert summary["failures"] == []
    assert len(summary["warnings"]) == 1


def test_a_failed_critical_expectation_stops_whatever_the_setting(tmp_path):
    runner = SuiteRunner("demo.raw", tmp_path / "report")
    broken = LABELS.assign(click=[0, 2, 1, 0])  # a label 2, and a purchase without a click (row 3)
    runner.run(replace(checks(), frame=broken))
    with pytest.raises(DataValidationError) as error:
        runner.finish()
    message = str(error.value)
    assert "2 of " in message
    assert "expect_column_values_to_be_in_set(click) failed on 1 of 4 rows" in message
    assert "expect_column_pair_values_a_to_be_greater_than_b(click,purchase) failed on 1 of 4 rows" in message
    assert "at rows [3]" in message


def split(rows: int, rate: float, unknown: float, mean: float, std: float) -> SplitInfo:
    return SplitInfo(
        rows=rows,
        label_rates={"click": rate},
        file="x.parquet",
        unknown_rates={"user": unknown},
        dense_means={"age": mean},
        dense_stds={"age": std},
    )


def metadata(**splits: SplitInfo) -> DatasetMetadata:
    return DatasetMetadata("demo", "csv", ["click"], FeatureSchema(), dict(splits), content_hash="abc")


def test_drift_measures_each_statistic_on_its_own_scale():
    before = metadata(train=split(100, 0.2, 0.1, 1.0, 2.0), test=split(10, 0.0, 0.0, 0.0, 0.0))
    after = metadata(
        train=split(150, 0.1, 0.25, 2.0, 1.0), test=split(10, 0.5, 0.0, 0.0, 0.0), new=split(1, 0, 0, 0, 0)
    )
    changes = drift_changes(profile(before), after)
    assert changes["rows__train"] == pytest.approx(0.5)  # relative
    assert changes["label_rate__train__click"] == pytest.approx(0.5)  # relative
    assert changes["unknown_rate__train__user"] == pytest.approx(0.15)  # absolute
    assert changes["dense_mean__train__age"] == pytest.approx(0.5)  # in previous standard deviations
    assert changes["label_rate__test__click"] == math.inf  # from no positive at all
    assert changes["dense_mean__test__age"] == 0.0  # a constant column that did not move
    assert not any("__new" in column for column in changes)  # a split without a baseline
    drift = {"previous": profile(before), "changes": changes, "thresholds": {"rows": 0.4, "label_rate": 0.6}}
    assert drift_over(drift) == ["rows__train", "label_rate__test__click"]
    params, metrics = drift_log_record(drift)
    assert params["data.drift.baseline"] == "abc"
    assert params["data.drift.over_threshold"] == "rows__train,label_rate__test__click"
    assert metrics["drift.rows__train"] == pytest.approx(0.5)
    assert "drift.label_rate__test__click" not in metrics  # infinite: named in the params only


SMALL_ALICCP = {
    "datasets.aliccp.synthetic.train_rows": 600,
    "datasets.aliccp.synthetic.test_rows": 200,
    "datasets.aliccp.synthetic.click_rate": 0.2,
    "datasets.aliccp.synthetic.purchase_given_click_rate": 0.2,
}


def test_drift_against_the_replaced_version_warns_and_is_recorded_for_training_runs(tmp_path):
    data = tmp_path / "data"
    first = load_params(SMALL_ALICCP)
    pipeline.download("aliccp", data_dir=data, params=first)
    pipeline.prepare("aliccp", data_dir=data, params=first)
    old = load_metadata(paths.prepared_dir(data, "aliccp"))
    assert old.drift == {}  # the first version has nothing to compare with
    assert set(old.splits["train"].unknown_rates) == set(old.features.names()) - {
        f.name for f in old.features.dense
    }

    second = load_params({**SMALL_ALICCP, "datasets.aliccp.synthetic.click_rate": 0.45})
    pipeline.download("aliccp", data_dir=data, params=second)
    result = pipeline.prepare("aliccp", data_dir=data, params=second)
    summary = json.loads(Path(result.report).read_text())
    new = load_metadata(paths.prepared_dir(data, "aliccp"))
    assert summary["success"] is True
    assert summary["drift"]["previous"]["content_hash"] == old.content_hash
    rate = summary["drift"]["changes"]["label_rate__train__click"]
    old_rate, new_rate = old.splits["train"].label_rates["click"], new.splits["train"].label_rates["click"]
    assert rate == pytest.approx(abs(new_rate - old_rate) / old_rate)
    assert rate > 0.5
    assert any("drift" in w and "(label_rate__train__click)" in w for w in summary["warnings"])
    assert new.drift["changes"] == summary["drift"]["changes"]  # recorded with the data

    # re-validating the published data measures the same drift from metadata.json alone
    again = pipeline.validate("aliccp", data_dir=data, params=second, stage="prepared")
    assert json.loads(Path(again.report).read_text())["drift"]["changes"] == new.drift["changes"]

    # a training run logs it: params data.drift.*, metrics drift.*
    from mtl.tracking.store import connect
    from mtl.tracking.training import _log_drift

    params = load_params({"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    with connect(params) as tracking:
        run = tracking.client.create_run(tracking.experiment_id("aliccp"))
        _log_drift(tracking, run.info.run_id, new)
        logged = tracking.client.get_run(run.info.run_id).data
    assert logged.params["data.drift.baseline"] == old.content_hash
    assert "label_rate__train__click" in logged.params["data.drift.over_threshold"]
    assert logged.metrics["drift.label_rate__train__click"] == pytest.approx(rate)

    # the same data again: no drift, so no drift warning
    result = pipeline.prepare("aliccp", data_dir=data, params=second)
    summary = json.loads(Path(result.report).read_text())
    assert max(summary["drift"]["changes"].values()) == 0.0
    assert not [w for w in summary["warnings"] if w.startswith("drift")]


def test_a_text_file_cut_mid_line_warns(tmp_path):
    """A cut that leaves a parseable last line (``150_14:85`` of ``150_14:852``) is caught by its missing
    newline: a warning, since some public files simply end without one."""
    folder = write_aliccp_tokens(tmp_path / "from")
    train = folder / "traindata_10w.csv"
    train.write_bytes(train.read_bytes()[:-3])
    params = load_params(dict(v.split("=") for v in VALID_30))
    pipeline.download("aliccp", data_dir=tmp_path, params=params, source="paddlerec", location=str(folder))
    summary = json.loads(
        Path(pipeline.validate("aliccp", data_dir=tmp_path, params=params).report).read_text()
    )
    assert summary["success"] is True
    truncated = [w for w in summary["warnings"] if "last_line_complete" in w]
    assert truncated == [
        "files (raw text files): expect_column_values_to_be_between(last_line_complete__traindata_10w.csv) "
        "failed on 1 of 1 rows, expected {'min_value': 1.0}, e.g. [0] at rows [0]"
    ]
