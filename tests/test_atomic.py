"""A failed step never destroys the previous good output (``mtl.atomic``), whatever the failure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mtl import atomic, cli, paths
from mtl.config import load_params

TINY = [
    "datasets.census.synthetic.train_rows=400",
    "datasets.census.synthetic.test_rows=200",
]


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) -> its sha256."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def test_swap_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a").write_text("old")

    def fail() -> None:
        with atomic.replace_on_success(target) as staging:
            (staging / "a").write_text("half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    assert tree_hashes(target) == {"a": hashlib.sha256(b"old").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic.replace_on_success(target) as staging:
        (staging / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_recover_puts_back_an_output_left_aside_by_a_kill_mid_swap(tmp_path):
    target = tmp_path / "out"
    aside, staging = atomic.aside_path(target), atomic.staging_path(target)
    aside.mkdir()
    (aside / "a").write_text("old")
    staging.mkdir()  # the new output, never swapped in
    atomic.recover(target)
    assert (target / "a").read_text() == "old"
    assert not aside.exists()
    assert not staging.exists()


def test_failed_download_keeps_the_previous_raw_files(tmp_path, capsys):
    common = ["--data-dir", str(tmp_path), *(f"--set={s}" for s in TINY)]
    assert cli.main([*common, "download", "census"]) == 0
    raw = paths.raw_dir(tmp_path, "census")
    before = tree_hashes(raw)
    assert len(before) >= 3

    # a --from that does not exist fails before anything is written
    code = cli.main([*common, "download", "census", "--source", "uci", "--from", str(tmp_path / "no.tar.gz")])
    assert code == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert tree_hashes(raw) == before
    # a source with no public URL and no --from
    assert cli.main([*common, "download", "aliccp", "--source", "tianchi"]) == 2
    assert "--from" in capsys.readouterr().err
    assert not paths.raw_dir(tmp_path, "aliccp").exists()

    # a failure in the middle of writing the new files
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar archive")
    assert cli.main([*common, "download", "census", "--source", "uci", "--from", str(bad)]) == 2
    assert tree_hashes(raw) == before
    assert sorted(p.name for p in raw.parent.iterdir()) == ["census"]


def test_failed_prepare_keeps_the_previous_prepared_data(tmp_path, monkeypatch):
    from mtl import pipeline

    params = load_params(TINY)
    pipeline.download("census", data_dir=tmp_path, params=params)
    prepared = paths.prepared_dir(tmp_path, "census")
    prepared.mkdir(parents=True)
    (prepared / "metadata.json").write_text("{}")  # stands for a previous good version
    before = tree_hashes(prepared)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(pipeline.get_dataset("census")), "prepare", crash)
    with pytest.raises(RuntimeError):
        pipeline.prepare("census", data_dir=tmp_path, params=params)
    assert tree_hashes(prepared) == before
    assert sorted(p.name for p in prepared.parent.iterdir()) == ["census"]


def test_failed_training_and_evaluation_keep_the_previous_model_and_scores(data_dir, monkeypatch):
    from mtl import pipeline
    from tests.support.models import small_params

    params = small_params("train.epochs=1")
    pipeline.train("census", "mmoe", data_dir=data_dir, params=params)
    pipeline.evaluate("census", "mmoe", data_dir=data_dir, params=params, split="valid")
    model_dir = paths.model_dir(data_dir, "census", "mmoe")
    before = tree_hashes(model_dir)

    def crash_in_training(dataset, model, *, data_dir, **kwargs):
        out = paths.model_dir(data_dir, dataset, model)
        (out / "weights.pt").write_bytes(b"half")
        raise RuntimeError("out of memory")

    def crash_in_scoring(dataset, model, *, data_dir, **kwargs):
        out = paths.evaluation_dir(data_dir, dataset, model, "valid")
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text("{")  # evaluations write eval/<split>/ only
        raise RuntimeError("out of memory")

    monkeypatch.setattr(pipeline, "_fit", crash_in_training)
    monkeypatch.setattr(pipeline, "_score", crash_in_scoring)
    with pytest.raises(RuntimeError):
        pipeline.train("census", "mmoe", data_dir=data_dir, params=params)
    with pytest.raises(RuntimeError):
        pipeline.evaluate("census", "mmoe", data_dir=data_dir, params=params, split="valid")
    assert tree_hashes(model_dir) == before
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["mmoe"]


def test_a_crashed_validation_keeps_the_previous_report(tmp_path, monkeypatch):
    from mtl import pipeline, validation

    params = load_params(TINY)
    pipeline.download("census", data_dir=tmp_path, params=params)
    report = paths.validation_dir(tmp_path, "census", "raw")
    report.mkdir(parents=True)
    (report / "summary.json").write_text('{"success": true}')  # stands for the previous report
    before = tree_hashes(report)

    def crash(dataset, raw, manifest, params, out):
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text("{")
        raise MemoryError

    monkeypatch.setattr(validation, "validate_raw", crash)
    with pytest.raises(MemoryError):
        pipeline.validate("census", data_dir=tmp_path, params=params)
    assert tree_hashes(report) == before
    assert sorted(p.name for p in report.parent.iterdir()) == ["raw"]


def test_published_path_names_where_a_staged_file_will_be(tmp_path):
    target = tmp_path / "validation" / "raw"
    staged = atomic.staging_path(target) / "summary.json"
    assert atomic.published_path(staged) == target / "summary.json"
    assert atomic.published_path(target / "x.staging.txt") == target / "x.staging.txt"  # not a staging folder
