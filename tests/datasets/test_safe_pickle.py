"""The restricted unpickler: DataFrames of pandas 3 and of pandas < 2 load; nothing else runs."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyarrow.lib import _restore_array

from mtl.datasets import safe_pickle
from mtl.datasets.lookalike.legacy_pickle import dumps_legacy_dataframe, rename_globals
from mtl.datasets.safe_pickle import load_dataframe_pickle, loads_dataframe
from mtl.errors import DataFormatError, UnsafePickleError


def sample_frame() -> pd.DataFrame:
    cells = np.empty(3, dtype=object)
    cells[:] = [np.arange(i, i + 5, dtype=np.int64) for i in range(3)]
    return pd.DataFrame(
        {
            "label": np.array([0, 1, 1], dtype=np.int64),
            "name": ["a", "b", None],  # pandas 3: a pyarrow-backed str column
            "kw1": cells,
            "score": [0.5, np.nan, 2.0],
            "tag": pd.array(["x", None, "z"], dtype="string"),
            "mixed": pd.Series(["x", 1, None], dtype=object),
        },
        index=pd.Index([10, 11, 12], dtype=np.int64),
    )


def assert_same(left: pd.DataFrame, right: pd.DataFrame, **kwargs: bool) -> None:
    pd.testing.assert_frame_equal(left.drop(columns="kw1"), right.drop(columns="kw1"), **kwargs)
    assert [cell.tolist() for cell in left["kw1"]] == [cell.tolist() for cell in right["kw1"]]


def globals_resolved(data: bytes, monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, str]]:
    """The (module, name) pairs a load asks for, as written in the pickle."""
    seen: set[tuple[str, str]] = set()
    original = safe_pickle.RestrictedUnpickler.find_class

    def spy(self: safe_pickle.RestrictedUnpickler, module: str, name: str) -> object:
        seen.add((module, name))
        return original(self, module, name)

    monkeypatch.setattr(safe_pickle.RestrictedUnpickler, "find_class", spy)
    loads_dataframe(data)
    return seen


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("range_index", [False, True])
def test_loads_what_pandas_3_writes(protocol: int, range_index: bool) -> None:
    frame = sample_frame()
    if range_index:
        frame = frame.reset_index(drop=True)
    assert_same(loads_dataframe(pickle.dumps(frame, protocol=protocol)), frame)


def test_loads_a_file_written_by_to_pickle(tmp_path: Path) -> None:
    frame = sample_frame()
    frame.to_pickle(tmp_path / "frame.pkl")
    assert_same(load_dataframe_pickle(tmp_path / "frame.pkl"), frame)


def test_loads_the_legacy_layout_with_int64index(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = sample_frame()[["label", "kw1"]]
    data = dumps_legacy_dataframe(frame)
    seen = globals_resolved(data, monkeypatch)
    # the names pandas < 2 with numpy 1.x wrote, none of which exists in pandas 3 / numpy 2 as such
    assert ("pandas.core.indexes.numeric", "Int64Index") in seen
    assert ("numpy.core.multiarray", "_reconstruct") in seen
    assert ("pandas.core.frame", "DataFrame") in seen
    loaded = loads_dataframe(data)
    assert loaded.index.dtype == np.int64
    assert loaded.index.tolist() == [10, 11, 12]
    assert_same(loaded, frame, check_column_type=False)  # legacy column labels are object, not str


@pytest.mark.parametrize("legacy", ["Int64Index", "UInt64Index", "Float64Index"])
def test_maps_every_removed_numeric_index(legacy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame({"label": [1, 0]}, index=pd.Index([3.5, 7.0]))
    renames = {("pandas", "Index"): ("pandas.core.indexes.numeric", legacy)}
    data = rename_globals(pickle.dumps(frame, protocol=4), renames)
    assert ("pandas.core.indexes.numeric", legacy) in globals_resolved(data, monkeypatch)
    assert loads_dataframe(data).index.tolist() == [3.5, 7.0]


def os_system_pickle(command: str) -> bytes:
    """``os.system(command)`` as protocol-0 opcodes: GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP."""
    return b"cos\nsystem\n(S" + repr(command).encode() + b"\ntR."


def test_refuses_os_system_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "train_stage1.pkl"
    data = os_system_pickle(f"touch {marker}")
    # a well-formed call of os.system: plain pickle would run it
    operations = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    assert ("GLOBAL", "os system") in operations
    assert ("REDUCE", None) in operations
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match=r"train_stage1\.pkl: refusing to unpickle global os\.system"):
        load_dataframe_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("posix", "system"),
        ("subprocess", "Popen"),
        ("pandas", "read_pickle"),  # allowed module, forbidden name
        ("numpy", "load"),
        ("pandas", "Series"),  # harmless but not part of a DataFrame
    ],
)
def test_refuses_globals_outside_the_allow_list(module: str, name: str) -> None:
    data = b"c" + module.encode() + b"\n" + name.encode() + b"\n(S'x'\ntR."
    refused = rf"upload\.pkl: refusing to unpickle global {module}\.{name}:"
    with pytest.raises(UnsafePickleError, match=refused):
        loads_dataframe(data, source="upload.pkl")


class _Marker:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return os.system, (f"touch {self.path}",)


def test_refuses_a_payload_hidden_inside_a_valid_frame(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    frame = pd.DataFrame({"label": [0, 1, 1], "note": pd.Series([1, _Marker(str(marker)), 3], dtype=object)})
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle global (os|posix)\.system"):
        loads_dataframe(pickle.dumps(frame, protocol=4))
    assert not marker.exists()


def test_refuses_a_pickle_that_is_not_a_dataframe(tmp_path: Path) -> None:
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"label": [0, 1]}))
    with pytest.raises(DataFormatError, match=r"dict\.pkl holds a pickled dict, expected a pandas DataFrame"):
        load_dataframe_pickle(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty \(0 bytes\)"),
        (pickle.dumps(sample_frame(), protocol=4)[:500], r"is empty or truncated|not a valid pickle"),
        (b"PK\x03\x04 not a pickle at all", r"not a valid pickle"),
    ],
    ids=["empty", "truncated", "garbage"],
)
def test_empty_truncated_and_garbage_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "test_hot_stage1.pkl"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message) as caught:
        load_dataframe_pickle(path)
    assert str(path) in str(caught.value)


def test_validates_pyarrow_buffers_before_use() -> None:
    _, (state,) = pa.array([1, 2, 3], type=pa.int64()).__reduce__()
    lying = (state[0], 1_000_000, *state[2:])  # claims a million values over a 24-byte buffer

    class Crafted:
        def __reduce__(self) -> tuple[object, ...]:
            return _restore_array, (lying,)

    with pytest.raises(DataFormatError, match=r"pyarrow array is malformed: Buffer #1 too small"):
        safe_pickle.restricted_load(io.BytesIO(pickle.dumps(Crafted(), protocol=4)), source="x.pkl")


def test_protocol_2_bytes_only_through_latin1() -> None:
    rot13 = b"c_codecs\nencode\n(S'abc'\nS'rot13'\ntR."
    with pytest.raises(DataFormatError, match=r"encoding 'rot13' is not allowed"):
        safe_pickle.restricted_load(io.BytesIO(rot13), source="x.pkl")
