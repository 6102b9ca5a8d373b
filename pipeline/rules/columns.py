"""Small vectorised helpers over pandas string columns backed by Arrow.

Turning a million strings into Python objects and back costs more than all the rules
together, so the rules stay in Arrow: these helpers read lengths and fixed-width bytes
straight from Arrow buffers and write new values back with one Arrow kernel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def chunks(values: pd.Series) -> pa.ChunkedArray:
    """The column's Arrow data as it is stored, possibly in many chunks (no copy)."""
    data = pa.array(values.array, type=pa.large_string(), from_pandas=True)
    if isinstance(data, pa.Array):
        data = pa.chunked_array([data], type=pa.large_string())
    return data


def arrow(values: pd.Series) -> pa.LargeStringArray:
    """The column as one contiguous Arrow large-string array (no copy when already one)."""
    data = chunks(values)
    return data.chunk(0) if data.num_chunks == 1 else data.combine_chunks()


def series(data: pa.Array, index: pd.Index) -> pd.Series:
    """Wrap an Arrow string array as a pandas ``str`` column."""
    return pd.Series(data, index=index, dtype="str")


def nonempty(values: pd.Series) -> np.ndarray:
    """Mask of the non-empty cells, read from the Arrow offsets (missing cells count as empty).

    Works chunk by chunk, so a column read in many pieces is not copied to be measured.
    """
    parts = [_filled(chunk) for chunk in chunks(values).chunks]
    if not parts:
        return np.zeros(0, dtype=bool)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _filled(data: pa.Array) -> np.ndarray:
    """Non-empty mask of one Arrow string array."""
    offsets = np.frombuffer(
        data.buffers()[1], dtype=np.int64, count=len(data) + 1, offset=data.offset * 8
    )
    filled: np.ndarray = np.diff(offsets) > 0
    if data.null_count:
        filled &= data.is_valid().to_numpy(zero_copy_only=False)
    return filled


def fixed_width(values: pd.Series, width: int) -> np.ndarray:
    """The bytes of a column whose every value is ``width`` ASCII characters, as (n, width)."""
    data = arrow(values)
    n = len(data)
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int64, count=n + 1, offset=data.offset * 8)
    raw = np.frombuffer(data.buffers()[2], dtype=np.uint8)
    return raw[offsets[0] : offsets[n]].reshape(n, width)


def scatter(base: pd.Series, pieces: list[tuple[np.ndarray, pd.Series]]) -> pd.Series:
    """``base`` with the positions of each piece replaced by that piece's values."""
    pieces = [(pos, vals) for pos, vals in pieces if len(pos)]
    if not pieces:
        return base
    positions = np.concatenate([pos for pos, _ in pieces])
    values = pa.concat_arrays([arrow(vals) for _, vals in pieces])
    if len(pieces) == 1 and len(positions) == len(base):
        # Every row replaced, in order (positions are distinct and increasing).
        return series(values, base.index)
    if len(pieces) > 1 or np.any(np.diff(positions) < 0):
        # replace_with_mask consumes replacements in position order.
        order = np.argsort(positions, kind="stable")
        positions = positions[order]
        values = values.take(pa.array(order))
    mask = np.zeros(len(base), dtype=bool)
    mask[positions] = True
    return series(pc.replace_with_mask(arrow(base), pa.array(mask), values), base.index)
