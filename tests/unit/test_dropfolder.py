"""Drop-folder watcher mechanics, driven scan by scan with an explicit clock.

The batches are run by ``CsvRunner``, a small real runner defined here (it reads the CSV and
writes a report), so every test exercises the watcher's own code unpatched.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from pipeline.dropfolder import layout as df
from pipeline.dropfolder.watcher import UnusableFile, Watcher, WatchSettings

HEADER = "id_type,id_number\n"
DEADLINE = 10.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CsvRunner:
    """Runs a "batch" in process: every row of a CSV with an ``id_number`` is onboarded.

    ``gate`` holds ``wait`` until the test opens it (a batch still running); ``fail_next``
    makes the next ``submit`` raise an unexpected error (Redis away, say).
    """

    def __init__(self) -> None:
        self.opened: list[Path] = []
        self.submits: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self.waiting = threading.Semaphore(0)

    def open_batch(self, path: Path) -> str:
        with open(path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline().strip().split(",")
        if "id_number" not in header:
            raise UnusableFile(f"{path.name}: line 1: no id_number column\n(second line)")
        self.opened.append(path)
        return f"b{len(self.opened)}"

    def submit(self, batch_id: str, path: Path) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("redis went away")
        self.submits[batch_id] += 1

    def wait(self, batch_id: str, stop: threading.Event) -> bool:
        self.waiting.release()
        while not self.gate.wait(0.01):
            if stop.is_set():
                return False
        return True

    def write_report(self, batch_id: str, path: Path, out_dir: Path) -> list[Path]:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        report = out_dir / "report.csv"
        with open(report, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id_number", "outcome"])
            writer.writerows([r["id_number"], "onboarded"] for r in rows)
        summary = out_dir / "summary.json"
        summary.write_text(json.dumps({"batch_id": batch_id, "rows": len(rows)}))
        return [report, summary]


def settings(**overrides: object) -> WatchSettings:
    """Watch settings for tests: a 5 s settle time on the test's own clock."""
    values: dict[str, object] = {"settle_seconds": 5.0, "max_concurrent": 2, "retry_seconds": 30}
    values.update(overrides)
    return WatchSettings(**values)  # type: ignore[arg-type]


def drop(root: Path, name: str | bytes, content: str) -> Path:
    """Deliver a finished file the careful way: write elsewhere, then rename into the inbox.

    The staged file's mtime is set a minute back (as ``cp -p``/``mv`` keep it), so the inbox
    entry's ctime is strictly later than its mtime whatever the timestamp granularity.
    """
    staging = root / "staging"
    staging.mkdir(exist_ok=True)
    tmp = staging / "upload"
    tmp.write_text(content, encoding="utf-8")
    st = tmp.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns - 60 * 10**9))
    inbox = os.fsencode(root / "inbox") if isinstance(name, bytes) else str(root / "inbox")
    target = os.path.join(inbox, name)  # type: ignore[arg-type]
    os.rename(tmp, target)
    return Path(os.fsdecode(target))


def names(directory: Path) -> list[str]:
    """Sorted entries of a directory."""
    return sorted(os.listdir(directory))


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """An empty drop folder with its sub-directories."""
    folder = tmp_path / "drop"
    df.Layout(folder).create()
    return folder


def test_renamed_in_file_is_taken_at_once_and_ends_in_outbox_and_done(root: Path) -> None:
    """A file renamed in is run on the first scan; report + summary in outbox, input in done."""
    runner = CsvRunner()
    drop(root, "customers.csv", HEADER + "4,784198090000005\n")
    with Watcher(root, runner, settings(), clock=Clock()) as watcher:
        started = watcher.scan_once()
        assert [job.path.name for job in started] == ["customers.csv"]
        assert watcher.wait_idle(DEADLINE)
    assert names(root / "outbox") == [
        "customers.b1.report.csv", "customers.b1.summary.json"
    ]
    report = (root / "outbox" / "customers.b1.report.csv").read_text()
    assert "784198090000005,onboarded" in report
    assert names(root / "done") == ["customers.csv"]
    assert names(root / "inbox") == []
    assert names(root / "processing") == []
    state = json.loads((root / df.STATE_FILE).read_text())
    [entry] = state["files"].values()
    assert (entry["batch_id"], entry["status"]) == ("b1", "done")


def test_slow_copy_is_taken_only_after_size_and_mtime_hold_for_the_settle_time(
    root: Path,
) -> None:
    """A file still growing stays in the inbox; once it stops changing for 5 s it is taken."""
    runner = CsvRunner()
    clock = Clock()
    path = root / "inbox" / "slow.csv"
    with Watcher(root, runner, settings(), clock=clock) as watcher, open(
        path, "w", encoding="utf-8"
    ) as writer:
        writer.write(HEADER)
        writer.flush()
        assert watcher.scan_once() == []
        for n in range(3):
            clock.advance(4.0)
            writer.write(f"4,78419809000000{n}\n")
            writer.flush()
            assert watcher.scan_once() == [], "a growing file must not be taken"
        writer.close()
        clock.advance(4.9)
        assert watcher.scan_once() == [], "not yet settled for 5 s"
        clock.advance(0.2)
        [job] = watcher.scan_once()
        assert watcher.wait_idle(DEADLINE)
    assert job.status == "done"
    assert names(root / "done") == ["slow.csv"]
    assert (root / "outbox" / "slow.b1.report.csv").read_text().count("onboarded") == 3


def test_temporary_names_are_never_taken(root: Path) -> None:
    """Dot-files, ``.part`` files and Office ``~$`` lock files stay where they are."""
    runner = CsvRunner()
    clock = Clock()
    for name in (".hidden.csv", "upload.csv.part", "~$book.xlsx"):
        drop(root, name, HEADER + "4,1\n")
    with Watcher(root, runner, settings(), clock=clock) as watcher:
        watcher.scan_once()
        clock.advance(60)
        assert watcher.scan_once() == []
    assert names(root / "inbox") == [".hidden.csv", "upload.csv.part", "~$book.xlsx"]
    assert runner.opened == []


def test_same_content_twice_goes_to_failed_naming_the_first_batch(root: Path) -> None:
    """A second copy of processed content is not run: failed/, with the first batch's id."""
    runner = CsvRunner()
    content = HEADER + "4,784198090000005\n"
    with Watcher(root, runner, settings(), clock=Clock()) as watcher:
        drop(root, "monday.csv", content)
        watcher.scan_once()
        assert watcher.wait_idle(DEADLINE)
        drop(root, "tuesday.csv", content)
        assert watcher.scan_once() == []
    assert len(runner.opened) == 1
    assert names(root / "failed") == ["tuesday.csv", "tuesday.csv.error.txt"]
    reason = (root / "failed" / "tuesday.csv.error.txt").read_text()
    assert reason.count("\n") == 1
    assert "duplicate" in reason and "batch b1" in reason and "monday.csv" in reason


def test_duplicates_are_run_again_when_the_setting_allows_it(root: Path) -> None:
    """With ``allow_duplicates`` the same content is run as a second batch."""
    runner = CsvRunner()
    content = HEADER + "4,784198090000005\n"
    with Watcher(root, runner, settings(allow_duplicates=True), clock=Clock()) as watcher:
        drop(root, "a.csv", content)
        watcher.scan_once()
        assert watcher.wait_idle(DEADLINE)
        drop(root, "a.csv", content)
        watcher.scan_once()
        assert watcher.wait_idle(DEADLINE)
    assert len(runner.opened) == 2
    assert names(root / "done") == ["a-2.csv", "a.csv"]
    assert "a.b2.report.csv" in names(root / "outbox")


def test_duplicate_detection_survives_a_restart(root: Path) -> None:
    """The sha256 map is on disk: a new watcher still refuses content run before."""
    content = HEADER + "4,784198090000005\n"
    with Watcher(root, CsvRunner(), settings(), clock=Clock()) as watcher:
        drop(root, "a.csv", content)
        watcher.scan_once()
        assert watcher.wait_idle(DEADLINE)
    runner = CsvRunner()
    with Watcher(root, runner, settings(), clock=Clock()) as watcher:
        drop(root, "b.csv", content)
        watcher.scan_once()
    assert runner.opened == []
    assert "b.csv.error.txt" in names(root / "failed")


def test_unusable_file_goes_to_failed_with_a_one_line_reason(root: Path) -> None:
    """The runner's UnusableFile puts the input in failed/ with one line saying why."""
    runner = CsvRunner()
    with Watcher(root, runner, settings(), clock=Clock()) as watcher:
        drop(root, "broken.csv", "name,phone\nx,y\n")
        assert watcher.scan_once() == []
        drop(root, "broken.csv", "name,phone\nx,y\n")
        watcher.scan_once()
    assert names(root / "failed") == [
        "broken-2.csv", "broken-2.csv.error.txt", "broken.csv", "broken.csv.error.txt"
    ]
    reason = (root / "failed" / "broken.csv.error.txt").read_text()
    assert reason == "broken.csv: line 1: no id_number column (second line)\n"
    # The same unusable content again fails for its own reason, not as a duplicate.
    assert "no id_number" in (root / "failed" / "broken-2.csv.error.txt").read_text()
    assert names(root / "outbox") == [] and names(root / "processing") == []


def test_killed_mid_batch_the_next_watcher_continues_the_same_batch(root: Path) -> None:
    """A file left in processing/ with its sidecar is resumed as the same batch, not redone."""
    runner = CsvRunner()
    runner.gate.clear()
    drop(root, "big.csv", HEADER + "4,784198090000005\n")
    first = Watcher(root, runner, settings(), clock=Clock())
    first.scan_once()
    assert runner.waiting.acquire(timeout=DEADLINE)
    # The watcher goes away mid-batch: its job stops waiting, nothing is moved.
    first.close()
    assert names(root / "processing") == ["big.csv", "big.csv.batch"]
    sidecar = df.Sidecar.load(root / "processing" / "big.csv")
    assert sidecar is not None and sidecar.batch_id == "b1"
    runner.gate.set()
    with Watcher(root, runner, settings(), clock=Clock()) as second:
        [job] = second.scan_once()
        assert second.wait_idle(DEADLINE)
    assert job.status == "done"
    assert len(runner.opened) == 1, "no second batch for the same file"
    assert runner.submits == Counter({"b1": 2})
    assert names(root / "outbox") == ["big.b1.report.csv", "big.b1.summary.json"]
    assert names(root / "processing") == []


def test_file_in_processing_without_sidecar_is_started_afresh(root: Path) -> None:
    """A crash between the move and the sidecar leaves a bare file: it gets a batch then."""
    runner = CsvRunner()
    (root / "processing" / "orphan.csv").write_text(HEADER + "4,1\n")
    with Watcher(root, runner, settings(), clock=Clock()) as watcher:
        [job] = watcher.scan_once()
        assert watcher.wait_idle(DEADLINE)
    assert job.status == "done"
    assert names(root / "done") == ["orphan.csv"]


def test_unexpected_error_keeps_the_file_and_retries_after_the_retry_time(root: Path) -> None:
    """Trouble that is not the file's fault leaves it in processing/ until the retry time."""
    runner = CsvRunner()
    runner.fail_next = True
    clock = Clock()
    drop(root, "a.csv", HEADER + "4,1\n")
    with Watcher(root, runner, settings(), clock=clock) as watcher:
        [job] = watcher.scan_once()
        assert watcher.wait_idle(DEADLINE)
        assert job.status == "retry" and job.error == "ConnectionError: redis went away"
        assert names(root / "processing") == ["a.csv", "a.csv.batch"]
        clock.advance(29)
        assert watcher.scan_once() == []
        clock.advance(2)
        [again] = watcher.scan_once()
        assert watcher.wait_idle(DEADLINE)
    assert again.status == "done"
    assert names(root / "outbox") == ["a.b1.report.csv", "a.b1.summary.json"]


def test_at_most_max_concurrent_batches_run_the_rest_wait_in_the_inbox(root: Path) -> None:
    """With two slots, a third arrived file stays in the inbox until a batch finishes."""
    runner = CsvRunner()
    runner.gate.clear()
    for n in range(3):
        drop(root, f"f{n}.csv", HEADER + f"4,{n}\n")
    with Watcher(root, runner, settings(max_concurrent=2), clock=Clock()) as watcher:
        assert len(watcher.scan_once()) == 2
        assert watcher.running == 2
        assert names(root / "inbox") == ["f2.csv"]
        assert watcher.scan_once() == []
        runner.gate.set()
        assert watcher.wait_idle(DEADLINE)
        assert len(watcher.scan_once()) == 1
        assert watcher.wait_idle(DEADLINE)
    assert names(root / "done") == ["f0.csv", "f1.csv", "f2.csv"]


def test_one_watcher_per_folder(root: Path) -> None:
    """A second watcher on the same folder is refused with a one-line message."""
    with Watcher(root, CsvRunner(), settings()), pytest.raises(df.DropFolderError) as err:
        Watcher(root, CsvRunner(), settings())
    assert "another watcher is already running" in str(err.value)


# -- hostile names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../x.csv", "_x.csv"),
        ("..", "file"),
        ("/etc/passwd", "_etc_passwd"),
        ("-rf.csv", "rf.csv"),
        (".bashrc", "bashrc"),
        ("a\nb\x00c.csv", "a_b_c.csv"),
        ("run.batch", "run.batch_"),
        ("Müller (2).csv", "Müller (2).csv"),
        ("x" * 300 + ".xlsx", "x" * 115 + ".xlsx"),
    ],
)
def test_safe_name_is_one_harmless_path_component(name: str, expected: str) -> None:
    """Separators, control characters, leading dots/dashes and length are all neutralised."""
    assert df.safe_name(name) == expected


def test_safe_name_of_bytes_that_are_not_utf8() -> None:
    """Undecodable bytes become ``_``; the result is plain UTF-8 text."""
    result = df.safe_name(b"caf\xe9\xff.csv")
    assert result == "caf__.csv"
    result.encode("utf-8")


def test_safe_name_keeps_multibyte_names_under_the_byte_limit() -> None:
    """A long Arabic name is clipped by bytes, never mid-character."""
    result = df.safe_name("عميل" * 100 + ".csv")
    assert len(result.encode("utf-8")) <= df.MAX_NAME_BYTES
    assert result.endswith(".csv")


def test_symlink_in_the_inbox_is_never_followed(root: Path, tmp_path: Path) -> None:
    """A link to a file outside the folder goes to failed/ as a link; its target is untouched."""
    secret = tmp_path / "secret.csv"
    secret.write_text(HEADER + "4,784198090000005\n")
    os.symlink(secret, root / "inbox" / "link.csv")
    runner = CsvRunner()
    with Watcher(root, runner, settings(), clock=Clock()) as watcher:
        watcher.scan_once()
    assert runner.opened == []
    assert (root / "failed" / "link.csv").is_symlink()
    assert "not a regular file" in (root / "failed" / "link.csv.error.txt").read_text()
    assert secret.read_text() == HEADER + "4,784198090000005\n"


def test_hostile_names_stay_inside_the_folder(root: Path) -> None:
    """Long and non-UTF-8 names are run; every path written is a safe name inside ``root``."""
    runner = CsvRunner()
    long_name = "a" * 250 + ".csv"
    drop(root, long_name, HEADER + "4,1\n")
    drop(root, b"\xff\xfeclients.csv", HEADER + "4,2\n")
    drop(root, "-n", HEADER + "4,3\n")
    with Watcher(root, runner, settings(max_concurrent=3), clock=Clock()) as watcher:
        assert len(watcher.scan_once()) == 3
        assert watcher.wait_idle(DEADLINE)
    written = [p for sub in ("outbox", "done", "failed") for p in (root / sub).iterdir()]
    assert len(written) == 9
    for path in written:
        assert df.inside(root, path)
        path.name.encode("utf-8")  # printable, storable names only
        assert len(path.name.encode("utf-8")) < 255
    assert "__clients.csv" in names(root / "done")
    assert "n" in names(root / "done")
    assert names(root / "inbox") == []
    json.loads((root / df.STATE_FILE).read_text())


def test_move_unique_never_overwrites(tmp_path: Path) -> None:
    """A taken name gets ``-2``, ``-3``: the earlier file survives."""
    target = tmp_path / "t"
    target.mkdir()
    for n in range(3):
        source = tmp_path / f"s{n}"
        source.write_text(str(n))
        df.move_unique(source, target, "x.csv")
    assert names(target) == ["x-2.csv", "x-3.csv", "x.csv"]
    assert (target / "x.csv").read_text() == "0"
    with pytest.raises(ValueError, match="plain file name"):
        df.move_unique(tmp_path / "s0", target, "../x.csv")


def test_watch_settings_come_from_onboard_watch_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ONBOARD_WATCH__<NAME>`` sets a knob, as a nested setting would."""
    monkeypatch.setenv("ONBOARD_WATCH__SETTLE_SECONDS", "2.5")
    monkeypatch.setenv("ONBOARD_WATCH__ALLOW_DUPLICATES", "true")
    loaded = WatchSettings()
    assert (loaded.settle_seconds, loaded.allow_duplicates) == (2.5, True)


def test_bad_watch_setting_is_a_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bad knob stops ``watch`` before anything starts, naming the variable."""
    from pipeline.commands.watch import watch_folder
    from pipeline.core.settings import Settings

    monkeypatch.setenv("ONBOARD_WATCH__MAX_CONCURRENT", "0")
    result = watch_folder(tmp_path / "drop", settings=Settings())
    code, error = result.exit_code, result.error
    assert code == 2
    assert error is not None and error.startswith("bad setting ONBOARD_WATCH__MAX_CONCURRENT:")
    assert "\n" not in error


def test_watcher_mechanics_import_no_queue_or_http_library() -> None:
    """The drop folder's watcher and layout modules stay free of celery, redis and httpx."""
    import subprocess
    import sys

    code = (
        "import sys, pipeline.dropfolder.watcher, pipeline.dropfolder.layout; "
        "print(sorted({'celery', 'redis', 'httpx'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_layout_creates_a_documents_folder_that_may_be_a_link(tmp_path: Path) -> None:
    """``create()`` makes ``documents/`` for the ID scans; unlike the moving sub-folders it
    may be a link (scans often live on a share), since files are only read from it."""
    share = tmp_path / "share"
    share.mkdir()
    root = tmp_path / "drop"
    root.mkdir()
    (root / "documents").symlink_to(share)
    layout = df.Layout(root)
    layout.create()
    assert layout.documents == root / "documents" and layout.documents.resolve() == share
    fresh = df.Layout(tmp_path / "other")
    fresh.create()
    assert fresh.documents.is_dir() and not fresh.documents.is_symlink()
