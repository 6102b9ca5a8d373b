"""A file's chunks with their validation, read one chunk ahead in a helper thread.

``onboard validate`` and the batch submit both stream a file through the rules this way.
Reading and validating are mostly Arrow code that releases the GIL, so the helper thread
takes them off the caller's critical path (writing a report, building and publishing
bodies) when a second core is free. One chunk ahead at most: two chunks alive at once keep
memory within the budget for a million rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.ingest.table import Chunk, Table
    from pipeline.rules.validation import ChunkResult, Validator

# Rows per chunk: the rules' per-chunk overheads are noticeable below this, and two chunks
# alive at once stay within the memory budget for a million rows.
CHUNK_ROWS = 50_000


def validated_chunks(
    table: Table, validator: Validator, size: int = CHUNK_ROWS
) -> Iterator[tuple[Chunk, ChunkResult]]:
    """Each chunk of ``table`` with its validation; the next one is prepared meanwhile.

    An error reading a chunk (a ragged line found mid-file) is raised where that chunk
    would have been yielded, after every earlier chunk.
    """
    chunks = iter(table.chunks(size))

    def read_next() -> tuple[Chunk, ChunkResult] | None:
        chunk = next(chunks, None)
        return None if chunk is None else (chunk, validator.validate_chunk(chunk))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        ahead: Future[tuple[Chunk, ChunkResult] | None] = pool.submit(read_next)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(read_next)
            yield item
            # Drop our reference before waiting on the next chunk, so at most two are alive.
            del item
