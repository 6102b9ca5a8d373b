"""Benchmark ``onboard validate`` end to end against ``frictionless validate`` on one file.

    .venv/bin/python bench/validate.py                 # 1,000,000 rows
    .venv/bin/python bench/validate.py --rows 100000   # quicker
    .venv/bin/python bench/validate.py --frictionless-rows 100000 --stages

Generates a synthetic CSV (bench/make_customers.py) in a temporary directory, runs
``onboard validate`` on it as a subprocess (read + validate + report, interpreter start-up
included) and measures wall time and the child's peak RSS. Then it validates the same file
with frictionless (its ``validate`` function in a child process, so the error list is not
printed) against a Table Schema with the equivalent constraints that Table Schema can express:
required, maxLength, pattern, enum of the master-data codes, date types and a unique ID
number. Frictionless cannot express Luhn, age, expiry or phone-region rules, so it does less
work than we do; the ratio is conservative. Prints rows/s for both, the ratio and the targets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from make_customers import COLUMNS  # noqa: E402

from pipeline.core.masterdata import load_master_data  # noqa: E402
from pipeline.core.settings import MANDATORY_COLUMNS, SAMPLE_DATA  # noqa: E402

TARGET_ROWS_PER_S = 150_000
TARGET_RSS_MB = 400
TARGET_RATIO = 5.0

# Columns checked against a master-data list, as pipeline/rules.py does.
CODE_LISTS = {
    "id_type": "id_types",
    "nationality": "countries",
    "second_nationality": "countries",
    "country_of_birth": "countries",
    "country_of_residence": "countries",
    "address_country": "countries",
    "id_issued_country": "countries",
    "resident_type_id": "resident_types",
    "occupation_id": "occupations",
    "gender": "genders",
    "address_type_id": "address_types",
    "annual_income_range_id": "income_ranges",
    "annual_income_currency_code": "currencies",
    "customer_type_id": "customer_types",
}
DATES = ("date_of_birth", "id_issued_on", "id_date_of_expiry", "id_visa_expiry_date")
PATTERNS = {
    # Frictionless wraps a pattern in ^...$, so alternations need their own group.
    "id_number": r"(?:784\d{12}|[A-Za-z0-9]{6,9})",
    "primary_mobile_number": r"\+?[0-9 ()\-]{7,20}",
    "secondary_mobile_number": r"\+?[0-9 ()\-]{7,20}",
    "email_id": r"[^@\s]+@[^@\s]+\.[^@\s]+",
    "political_exposed_person": r"(?:[YyNnTtFf01]|[Tt]rue|[Ff]alse|[Yy]es|[Nn]o)",
}
MAX_LENGTHS = {"channel": 20, "primary_mobile_number": 20, "email_id": 120}


def table_schema() -> dict[str, object]:
    """A frictionless Table Schema equivalent (as far as it can be) to our rules."""
    master = load_master_data(SAMPLE_DATA / "master_data")
    fields: list[dict[str, object]] = []
    for name in COLUMNS:
        constraints: dict[str, object] = {}
        field: dict[str, object] = {"name": name, "type": "date" if name in DATES else "string"}
        if name in MANDATORY_COLUMNS:
            constraints["required"] = True
        if name in CODE_LISTS:
            # Table Schema's enum is exact, so accept every spelling our resolver accepts.
            code_list = master[CODE_LISTS[name]]
            constraints["enum"] = sorted({*code_list.codes, *code_list.spellings})
        if name in PATTERNS:
            constraints["pattern"] = PATTERNS[name]
        if name.endswith("_name") or name in {"id_name_as_per_id", "employer_name"}:
            constraints["maxLength"] = 255
        if name in MAX_LENGTHS:
            constraints["maxLength"] = MAX_LENGTHS[name]
        if name == "id_number":
            constraints["unique"] = True
        if constraints:
            field["constraints"] = constraints
        fields.append(field)
    return {"fields": fields, "missingValues": [""]}


FRICTIONLESS_SCRIPT = """
import json, os, sys
from frictionless import Resource, Schema, validate
schema = Schema.from_descriptor(json.load(open(sys.argv[2])))
base, name = os.path.split(sys.argv[1])
resource = Resource(path=name, basepath=base, schema=schema)
limit = int(sys.argv[3]) or None
report = validate(resource, limit_errors=10**9, limit_rows=limit)
task = report.tasks[0]
kinds = sorted({error.type for error in task.errors})
stats = {"rows": task.stats.get("rows"), "errors": report.stats["errors"], "kinds": kinds}
print(json.dumps(stats))
"""


def _peak_rss_kib(pid: int) -> int:
    """The process's own peak RSS so far (``VmHWM``), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_child(command: list[str]) -> tuple[float, float, int, str, str]:
    """Run ``command``; return wall seconds, peak RSS in MB, exit code, stdout, stderr.

    The peak is the child's ``VmHWM`` polled until it exits. ``RUSAGE_CHILDREN`` would be
    wrong here: Linux charges a child with its parent's RSS at fork, and this process holds
    the generated data.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        peak = 0
        while child.poll() is None:
            peak = max(peak, _peak_rss_kib(child.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return elapsed, peak / 1024, child.returncode, out.read(), err.read()


def stage_times(data: Path, out_dir: Path) -> None:
    """Time reading, rules and report separately, in this process, one chunk after another."""
    import resource
    from datetime import date

    from pipeline.core.settings import Settings
    from pipeline.ingest.table import open_table
    from pipeline.reports.writer import ReportWriter, validation_outcomes
    from pipeline.rules.validation import Validator

    settings = Settings()
    master = load_master_data(settings.validation.master_data_dir)
    started = time.perf_counter()
    table = open_table(data)
    validator = Validator(master, settings.validation, base_dir=data.parent, today=date.today())
    read = rules = report = 0.0
    with ReportWriter(out_dir, table.info.headers, name="stages") as writer:
        chunks = iter(table.chunks(50_000))
        while True:
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            t1 = time.perf_counter()
            if chunk is None:
                break
            result = validator.validate_chunk(chunk)
            t2 = time.perf_counter()
            writer.write(chunk.raw, validation_outcomes(chunk.row_numbers, result.errors))
            t3 = time.perf_counter()
            read, rules, report = read + t1 - t0, rules + t2 - t1, report + t3 - t2
    total = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"stages           : read {read:.2f} s, rules {rules:.2f} s, report {report:.2f} s, "
          f"total {total:.2f} s, peak RSS {peak:,.0f} MB (this process)")


def main(argv: list[str] | None = None) -> int:
    """Generate, run both validators, print the figures; exit 1 if a run failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--invalid-rate", type=float, default=0.05)
    parser.add_argument("--skip-frictionless", action="store_true")
    parser.add_argument(
        "--stages", action="store_true",
        help="also time reading, rules and report separately (in this process, at the end)",
    )
    parser.add_argument(
        "--frictionless-rows", type=int, default=0,
        help="validate only the first N rows with frictionless (default: all)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        work = Path(tmp)
        data = work / "customers.csv"
        started = time.perf_counter()
        # Generated in a child so this process stays small while the others run.
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "make_customers.py"), "--rows",
             str(args.rows), "--invalid-rate", str(args.invalid_rate), "--out", str(data)],
            check=True, stdout=subprocess.DEVNULL,
        )
        size_mb = data.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows ({size_mb:,.0f} MB) in "
              f"{time.perf_counter() - started:.1f} s")

        ours_s, ours_rss, code, _, stderr = run_child(
            [sys.executable, "-m", "pipeline.cli", "validate", str(data), "--out",
             str(work / "reports")]
        )
        if code not in (0, 1):
            print(f"onboard validate failed ({code}): {stderr.strip()}")
            return 1
        summary = json.loads((work / "reports" / "summary.json").read_text())
        ours_rate = args.rows / ours_s
        print(f"onboard validate : {ours_s:6.1f} s  {ours_rate:>9,.0f} rows/s  "
              f"peak RSS {ours_rss:,.0f} MB  ({summary['invalid']:,} invalid rows)")
        ratio = None
        if not args.skip_frictionless:
            theirs_rate = run_frictionless(work, data, args.frictionless_rows)
            if theirs_rate is None:
                return 1
            ratio = ours_rate / theirs_rate
            print(f"ratio            : {ratio:.1f}x")
        print(
            f"targets          : ≥{TARGET_ROWS_PER_S:,} rows/s "
            f"{'met' if ours_rate >= TARGET_ROWS_PER_S else 'MISSED'}, "
            f"≤{TARGET_RSS_MB} MB {'met' if ours_rss <= TARGET_RSS_MB else 'MISSED'}"
            + ("" if ratio is None else
               f", ≥{TARGET_RATIO:.0f}x {'met' if ratio >= TARGET_RATIO else 'MISSED'}")
        )
        if args.stages:
            stage_times(data, work / "stages")
    return 0


def run_frictionless(work: Path, data: Path, rows: int) -> float | None:
    """Validate ``data`` (its first ``rows`` rows, 0 = all) with frictionless in a child;
    print its figures and return its rows/s, or None if it failed."""
    schema_path = work / "schema.json"
    schema_path.write_text(json.dumps(table_schema()))
    seconds, rss, code, stdout, stderr = run_child(
        [sys.executable, "-c", FRICTIONLESS_SCRIPT, str(data), str(schema_path), str(rows)]
    )
    if code != 0:
        print(f"frictionless failed: {stderr.strip()[-500:]}")
        return None
    stats = json.loads(stdout.strip().splitlines()[-1])
    rate: float = stats["rows"] / seconds
    print(f"frictionless     : {seconds:6.1f} s  {rate:>9,.0f} rows/s  peak RSS {rss:,.0f} MB  "
          f"({stats['rows']:,} rows, {stats['errors']:,} errors: {', '.join(stats['kinds'])})")
    return rate


if __name__ == "__main__":
    sys.exit(main())
