"""Pickling a DataFrame the way pandas < 2 with numpy 1.x did, for the synthetic look-alike source.

The published MetaHeac files reference ``pandas.core.frame.DataFrame``, the block manager's
"0.14.1" state with one block per run of same-dtype columns, ``pandas.core.indexes.numeric.Int64Index``
and ``numpy.core.multiarray._reconstruct``. pandas 3 cannot produce those names (the legacy classes
and modules are gone), so we pickle small carrier objects whose ``__reduce__`` yields that structure,
then rewrite the four global references in the pickle's head to their legacy names. The result
loads with pandas 3 and with ``mtl.datasets.safe_pickle`` exactly like the real files.
"""

from __future__ import annotations

import copyreg
import pickle
import pickletools
import struct
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.indexes.base import _new_Index
from pandas.core.internals.managers import BlockManager

PROTOCOL = 4  # what the published files use


class LegacyInt64Index:
    """Stands in for ``pandas.core.indexes.numeric.Int64Index`` until the global is renamed."""


_RENAMES = {
    ("pandas", "DataFrame"): ("pandas.core.frame", "DataFrame"),
    ("pandas", "Index"): ("pandas.core.indexes.base", "Index"),
    (__name__, LegacyInt64Index.__qualname__): ("pandas.core.indexes.numeric", "Int64Index"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy.core.multiarray", "_reconstruct"),
}


class _Index:
    """An index pickled through ``_new_Index`` with a chosen class (object labels or Int64Index)."""

    def __init__(self, cls: type, data: np.ndarray):
        self.cls, self.data = cls, data

    def __reduce__(self) -> tuple[Any, ...]:
        return _new_Index, (self.cls, {"data": self.data, "name": None})


class _Manager:
    """A BlockManager in the state layout of pandas 0.14.1 to 1.x."""

    @property
    def __class__(self) -> type:  # the pickler checks that a NEWOBJ reduce comes from that class
        return BlockManager

    def __init__(self, axes: list[_Index], blocks: list[tuple[np.ndarray, slice, _Index]]):
        self.axes, self.blocks = axes, blocks

    def __reduce__(self) -> tuple[Any, ...]:
        state = (
            self.axes,
            [values for values, _, _ in self.blocks],
            [items for _, _, items in self.blocks],
            {
                "0.14.1": {
                    "axes": self.axes,
                    "blocks": [{"values": values, "mgr_locs": locs} for values, locs, _ in self.blocks],
                }
            },
        )
        return copyreg.__newobj__, (BlockManager,), state


class _Frame:
    @property
    def __class__(self) -> type:
        return pd.DataFrame

    def __init__(self, manager: _Manager):
        self.manager = manager

    def __reduce__(self) -> tuple[Any, ...]:
        state = {"_mgr": self.manager, "_typ": "dataframe", "_metadata": [], "attrs": {}}
        return copyreg.__newobj__, (pd.DataFrame,), state


def dumps_legacy_dataframe(frame: pd.DataFrame) -> bytes:
    """Pickle ``frame`` (numpy-dtype columns, int64 index) as pandas < 2 wrote it."""
    if frame.index.dtype != np.int64:
        raise ValueError(f"the legacy layout needs an int64 index, got {frame.index.dtype}")
    columns = list(frame.columns)
    blocks: list[tuple[np.ndarray, slice, _Index]] = []
    start = 0
    while start < len(columns):
        dtype = frame[columns[start]].dtype
        if not isinstance(dtype, np.dtype):  # extension arrays pickled differently before pandas 2
            raise ValueError(f"column {columns[start]!r} has dtype {dtype}; only numpy dtypes are supported")
        stop = start + 1
        while stop < len(columns) and frame[columns[stop]].dtype == dtype:
            stop += 1
        names = columns[start:stop]
        values = np.empty((len(names), len(frame)), dtype=dtype)
        for row, name in enumerate(names):
            values[row] = frame[name].to_numpy(dtype=dtype)
        blocks.append((values, slice(start, stop, 1), _Index(pd.Index, np.array(names, dtype=object))))
        start = stop
    axes = [
        _Index(pd.Index, np.array(columns, dtype=object)),
        _Index(LegacyInt64Index, frame.index.to_numpy(dtype=np.int64)),
    ]
    data = pickle.dumps(_Frame(_Manager(axes, blocks)), protocol=PROTOCOL)
    return rename_globals(data, _RENAMES)


def rename_globals(data: bytes, renames: dict[tuple[str, str], tuple[str, str]]) -> bytes:
    """Make each STACK_GLOBAL naming a key of ``renames`` name its value instead.

    Before each such STACK_GLOBAL we insert ``POP POP`` and the new module and name strings, rather
    than editing the original strings, because the pickler memoizes those strings and may push them
    again later for other globals. Every renamed global is pickled once (later uses are memo
    references), so scanning stops once all are found -- at the head of the stream, as the carriers
    above pickle the frame, the column index and the Int64Index before any block. Frame lengths
    (protocol 4 framing) grow by the inserted bytes.
    """
    todo = dict(renames)
    inserts: list[tuple[int, bytes]] = []
    frames: dict[int, int] = {}  # FRAME opcode position -> bytes inserted inside that frame
    frame: tuple[int, int] | None = None  # (FRAME opcode position, end of its frame)
    memo: list[str | None] = []
    pushed: list[str | None] = [None, None]  # the two values last pushed (strings, else None)
    for opcode, arg, pos in pickletools.genops(data):
        if opcode.name == "FRAME":
            frame = (pos, pos + 9 + arg)
            continue
        if opcode.name == "MEMOIZE":
            memo.append(pushed[-1])
            continue
        if opcode.name == "STACK_GLOBAL" and (pushed[0], pushed[1]) in todo:
            module, name = todo.pop((pushed[0], pushed[1]))
            insert = pickle.POP + pickle.POP + _short_string(module) + _short_string(name)
            inserts.append((pos, insert))
            if frame is not None and frame[0] < pos < frame[1]:
                frames[frame[0]] = frames.get(frame[0], 0) + len(insert)
            if not todo:
                break
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"):
            value = arg
        elif opcode.name in ("BINGET", "LONG_BINGET"):
            value = memo[arg]
        else:
            value = None
        pushed = [pushed[1], value]
    if todo:
        raise ValueError(f"globals {sorted(todo)} not found in the head of the pickle")
    out = bytearray(data)
    edits: list[tuple[int, bytes | None]] = [*inserts, *((pos, None) for pos in frames)]
    for pos, insert in sorted(edits, key=lambda edit: edit[0], reverse=True):
        if insert is None:
            (length,) = struct.unpack_from("<Q", out, pos + 1)
            struct.pack_into("<Q", out, pos + 1, length + frames[pos])
        else:
            out[pos:pos] = insert
    return bytes(out)


def _short_string(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return pickle.SHORT_BINUNICODE + bytes([len(encoded)]) + encoded
