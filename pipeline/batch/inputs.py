"""A batch's input file: how it was opened, so the report, a rerun and a recovery open it
again exactly as submit read it; and the batch ids that name the batches."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import file_error
from pipeline.core.settings import Settings
from pipeline.rules.stream import CHUNK_ROWS

if TYPE_CHECKING:
    from pipeline.ingest.table import Chunk, Table
    from workers.state import BatchState

_ID_LETTERS = "abcdefghjkmnpqrstuvwxyz"


def new_batch_id() -> str:
    """A sortable, unique batch id: UTC minute plus six random letters.

    No run of six or more digits: the log masking processor hides such runs as possible ID
    or phone numbers, and a batch id must stay readable in the logs.
    """
    suffix = "".join(secrets.choice(_ID_LETTERS) for _ in range(6))
    return f"{datetime.now(UTC):%Y-%m-%d-%H%M}-{suffix}"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How to (re)open a batch's input exactly as submit read it.

    ``documents_dir`` is where the ID scans rows name are looked up (paths may not leave
    it); by default the input file's folder.
    """

    path: Path
    sheet: str | None = None
    column_map: Path | None = None
    master_data_dir: Path | None = None
    documents_dir: Path | None = None

    def resolved(self) -> InputSpec:
        """The same spec with absolute paths (they are kept in the batch's meta)."""
        def absolute(path: Path | None) -> Path | None:
            return path.resolve() if path is not None else None

        return InputSpec(
            self.path.resolve(), self.sheet, absolute(self.column_map),
            absolute(self.master_data_dir), absolute(self.documents_dir),
        )

    @property
    def scans(self) -> Path:
        """The folder the rows' document paths are relative to."""
        return self.documents_dir or self.path.parent


def open_input(spec: InputSpec, settings: Settings) -> Table:
    """Open the input as ingest does (required columns from the settings)."""
    from pipeline.ingest.schema import ColumnMap
    from pipeline.ingest.table import open_table

    try:
        mapping = ColumnMap.load(spec.column_map) if spec.column_map is not None else None
        return open_table(
            spec.path, sheet=spec.sheet, column_map=mapping,
            required=settings.validation.mandatory_columns,
        )
    except OSError as exc:
        raise file_error(exc, spec.path) from None


def input_spec(state: BatchState) -> InputSpec:
    """How the batch's input was opened, from its meta."""
    f = state.input
    return InputSpec(
        Path(f.get("input_path", "")),
        f.get("sheet") or None,
        Path(f["column_map"]) if f.get("column_map") else None,
        Path(f["master_data_dir"]) if f.get("master_data_dir") else None,
        Path(f["documents_dir"]) if f.get("documents_dir") else None,
    )


def iter_chunks(table: Table) -> Iterator[Chunk]:
    """The table's chunks at the pipeline's chunk size (the report re-reads with this)."""
    return iter(table.chunks(CHUNK_ROWS))
