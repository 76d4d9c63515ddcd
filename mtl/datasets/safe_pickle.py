"""Loading pickled pandas DataFrames from untrusted files through an allow-list of globals.

Unpickling runs whatever callable the file names, so a downloaded pickle is arbitrary code. The
``RestrictedUnpickler`` resolves a global only if it is one of the pandas/numpy/pyarrow classes and
functions that a pickled DataFrame needs -- as written by pandas < 2 with numpy 1.x (the
``pandas.core.indexes.numeric.Int64Index`` / ``numpy.core.multiarray`` era, mapped to their current
homes) and by pandas 3 with numpy 2 (string columns as pyarrow arrays) -- and refuses anything else with
``UnsafePickleError`` naming the file and the global. The allow-list was derived with ``pickletools``
from real files and from what pandas 3.1 writes for protocols 2-5, never by executing a file.

It subclasses the C ``pickle.Unpickler`` (``find_class`` is the single hook through which every global
of every opcode -- GLOBAL, STACK_GLOBAL, INST, OBJ, EXT* -- is resolved), so loading runs at C speed.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from mtl.errors import DataFormatError, UnsafePickleError

# (module, name) as written in a pickle -> (module, name) where it lives now.
_INDEX = ("pandas.core.indexes.base", "Index")
_RECONSTRUCT = ("numpy._core.multiarray", "_reconstruct")
_FROMBUFFER = ("numpy._core.numeric", "_frombuffer")
_SCALAR = ("numpy._core.multiarray", "scalar")
_UNPICKLE_BLOCK = ("pandas._libs.internals", "_unpickle_block")
_DATAFRAME, _RANGE_INDEX = ("pandas", "DataFrame"), ("pandas", "RangeIndex")
_STRING_DTYPE, _NA = ("pandas", "StringDtype"), ("pandas", "NA")
_ARROW_STRINGS, _STRINGS = ("pandas.arrays", "ArrowStringArray"), ("pandas.arrays", "StringArray")
# Globals allowed under their current name: the frame and its block manager, the axes, string columns
# (pandas 3 stores them as pyarrow arrays, or Python objects without pyarrow), numpy arrays, dtypes and
# scalars, and plain Python values inside the state.
_CURRENT = (
    _DATAFRAME, ("pandas.core.internals.managers", "BlockManager"), _UNPICKLE_BLOCK,
    _INDEX, ("pandas.core.indexes.base", "_new_Index"), _RANGE_INDEX,
    _STRING_DTYPE, _ARROW_STRINGS, _STRINGS, _NA,
    ("pyarrow.lib", "py_buffer"), ("pyarrow.lib", "type_for_alias"),
    ("numpy", "ndarray"), ("numpy", "dtype"), _RECONSTRUCT, _FROMBUFFER, _SCALAR,
    ("builtins", "slice"), ("builtins", "bytearray"),
)  # fmt: skip
# Other names pickles use for those globals: where they lived before, or their module of definition.
_OLD_NAMES = {
    _DATAFRAME: [("pandas.core.frame", "DataFrame")],
    _UNPICKLE_BLOCK: [("pandas.core.internals.blocks", "new_block")],  # pandas <= 1.3
    # pandas < 2 numeric indexes, removed in pandas 2 (an Index with that dtype since)
    _INDEX: [
        ("pandas", "Index"),
        *(("pandas.core.indexes.numeric", f"{t}Index") for t in ("Int64", "UInt64", "Float64")),
    ],
    _RANGE_INDEX: [("pandas.core.indexes.range", "RangeIndex")],
    _STRING_DTYPE: [("pandas.core.arrays.string_", "StringDtype")],
    _ARROW_STRINGS: [("pandas.core.arrays.string_arrow", "ArrowStringArray")],
    _STRINGS: [("pandas.core.arrays.string_", "StringArray")],
    _NA: [("pandas._libs.missing", "NA")],
    # numpy 2 moved numpy.core to numpy._core
    **{
        (module, name): [(module.replace("._core", ".core"), name)]
        for module, name in (_RECONSTRUCT, _FROMBUFFER, _SCALAR)
    },
}
ALLOWED_GLOBALS: dict[tuple[str, str], tuple[str, str]] = {
    **{name: name for name in _CURRENT},
    **{old: name for name, olds in _OLD_NAMES.items() for old in olds},
}
# Python 2 module names that protocol-2 pickles use for builtins.
_PY2_MODULES = {"__builtin__": "builtins"}
_LATIN1 = {"latin1", "latin-1", "iso-8859-1"}


def _restore_arrow_array(data: Any) -> Any:
    """pyarrow's array constructor trusts its buffers; validate them so a crafted file cannot read
    out of bounds."""
    import pyarrow as pa
    from pyarrow.lib import _restore_array

    array = _restore_array(data)
    try:
        array.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"pickled pyarrow array is malformed: {exc}") from None
    return array


def _encode_latin1(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only, no other codec)."""
    if encoding.lower() not in _LATIN1:
        raise ValueError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin-1")


_WRAPPED: dict[tuple[str, str], Callable[..., Any]] = {
    ("pyarrow.lib", "_restore_array"): _restore_arrow_array,
    ("_codecs", "encode"): _encode_latin1,
}


def allowed_globals() -> list[str]:
    """Every global the restricted unpickler accepts, as ``module.name``."""
    return sorted(f"{m}.{n}" for m, n in (*ALLOWED_GLOBALS, *_WRAPPED))


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only the globals of ``ALLOWED_GLOBALS``."""

    def __init__(self, file: BinaryIO, *, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        key = (_PY2_MODULES.get(module, module), name)
        if key in _WRAPPED:
            return _WRAPPED[key]
        if key not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle global {module}.{name}: only the pandas/numpy "
                "classes a DataFrame needs are allowed, so this file is not a plain pickled DataFrame "
                "(it may be malicious; do not load it with pickle or pandas.read_pickle)"
            )
        home, attribute = ALLOWED_GLOBALS[key]
        return getattr(importlib.import_module(home), attribute)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refusing persistent id {pid!r} (not a plain pickle)")


def restricted_load(file: BinaryIO, *, source: str) -> Any:
    """Unpickle one object from ``file`` with the allow-list; errors name ``source``."""
    try:
        return RestrictedUnpickler(file, source=source).load()
    except UnsafePickleError:
        raise
    except EOFError:
        raise DataFormatError(f"{source} is empty or truncated: the pickle ends early") from None
    except pickle.UnpicklingError as exc:
        raise DataFormatError(f"{source} is not a valid pickle (corrupt or truncated): {exc}") from None
    except Exception as exc:  # an allowed constructor rejected crafted or corrupt state
        raise DataFormatError(
            f"{source}: could not rebuild the pickled object: {type(exc).__name__}: {exc}"
        ) from None


def loads_dataframe(data: bytes, *, source: str = "<bytes>") -> pd.DataFrame:
    """``load_dataframe_pickle`` for bytes already in memory."""
    return _expect_frame(restricted_load(io.BytesIO(data), source=source), source)


def load_dataframe_pickle(path: Path) -> pd.DataFrame:
    """Load a pickled pandas DataFrame from an untrusted file (allow-listed globals only)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path} not found (expected a pickled pandas DataFrame)")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path} is empty (0 bytes); expected a pickled pandas DataFrame")
    with open(path, "rb") as handle:
        return _expect_frame(restricted_load(handle, source=str(path)), str(path))


def _expect_frame(obj: Any, source: str) -> pd.DataFrame:
    if not isinstance(obj, pd.DataFrame):
        raise DataFormatError(f"{source} holds a pickled {type(obj).__name__}, expected a pandas DataFrame")
    return obj
