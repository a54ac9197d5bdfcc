"""Seed parity: each source project's model trained through `cifar-ops run` on the shared JPEGs and
scored on a held-out test part none of its images trained on, next to the figure the seed reports.

Each row runs `python -m cifar_ops run --config <row's config> --json` as a child process (the
product's own path), logging to this bench's own SQLite warehouse and artifacts folder, and records
held-out test accuracy, train accuracy (un-augmented train images), overfitting gap (train minus
test), the gap by the seeds' likely rule (the last epoch's training accuracy as Keras' history
reports it, on augmented batches with dropout on, minus test), epochs trained (the
warehouse's epoch rows), wall time and the child's peak resident memory (`os.wait4` rusage). The
data default is the 50,000 shared JPEGs (`data.source=folder`, `data.dir=.cache/data`): 20% held
out as test with the config's fixed seed, the rest split into train and validation. Results are
appended to `<workdir>/results.jsonl`; the Markdown table printed at the end (for bench/RESULTS.md
and the README) holds each row's latest result, so rows can be run one invocation at a time. A
SIGTERM (`kill`) to this script stops the row's training child too (it checkpoints and exits 143)
and records no result for it, only the stopped segment's wall time and memory in
`<workdir>/segments.jsonl`; `--resume RUN_ID` continues that run from its checkpoint, so a row
longer than one sitting (resnet_wide's 35 epochs) trains over several, and its result counts the
wall time of every segment and the highest peak memory among them.
The printed `cifar-ops report` command puts every parity run on one page (seed 004's comparison
table: test accuracy, loss, overfitting gap, parameters). Transfer rows are not run: they need
ImageNet weights, which cannot be downloaded here; their line gives the command a user with
weights runs.

    python bench/seed_parity.py                                  # every row this CPU can train
    python bench/seed_parity.py --only simple_cnn,conv4_bn       # some rows
    python bench/seed_parity.py --only resnet20_fast --set train.epochs=20
    python bench/seed_parity.py --plan                           # commands and estimates only
    python bench/seed_parity.py --table                          # every row's latest result
    python bench/seed_parity.py --only resnet_wide --resume RUN_ID  # after a `kill`: continue

Plan for the long runs on the 2-core CPU, one row at a time (nothing else training). Estimates
scale bench/RESULTS.md's measured ResNet-20 epoch (100-130 s for 32,000 train + 8,000 validation
images, float32, seed 004's augmentation) by each net's multiply-adds per image, and halve it for
bfloat16 configs; simple_cnn is the measured 2.3 min (14 epochs, early-stopped). Early stopping
can end a row sooner. resnet_wide's one-cycle recipe ran 187 s an epoch in bfloat16 (38,000 images,
batch 128), its Adam reading 309 s (32,000 images, batch 64);
measured rows ran faster than this scaling (vgg10's earlier 50-epoch Adam recipe: 40.5 min
against 60-75; resnet20's Adam reading of the seed's 60 epochs: 52.2 min, early-stopped at 50).
Measured minutes are from a CPU with AVX-512 and native bfloat16; on an AVX2-only one float32 is
~3x slower and bfloat16 configs train in float32 (bench/RESULTS.md, "bfloat16 on a CPU without
native support").

Each row runs as `python bench/seed_parity.py --only ROW` (seed budget = the seed's own recipe):

| row | config | multiply-adds / image | est. minutes |
| --- | --- | --- | --- |
| simple_cnn | simple_cnn.yaml, up to 20 epochs | 4.2M | 3 (measured 2.3) |
| conv4_bn | conv4_sgd.yaml, 40 epochs, bfloat16 | 25.0M | 20-27 (measured 21.1) |
| custom_cnn | custom_cnn.yaml, up to 40 epochs | 38.9M | 44 (measured 43.9) |
| vgg10 | vgg10.yaml, 30 epochs, bfloat16 | 33.5M | 20-27 (measured 34.2, an upper bound) |
| resnet20 | resnet20.yaml, the seed's 60 epochs | 40.8M | 110-130 (measured 62.9-65.3) |
| resnet20_fast | resnet20_fast.yaml, 40 epochs, bfloat16 | 40.8M | 40 (measured 40.1) |
| resnet_wide | resnet_wide.yaml, 35 epochs (seed budget), bfloat16 | 360.5M | 220 (measured 112) |
| resnet_wide_fast | resnet_wide_fast.yaml, 20 epochs, bfloat16 | 360.5M | 80 (measured 78.5) |

Seed 001's grid (the search the seed names: 24 points of learning rate, momentum, batch size and
dropout over the rest of conv4_sgd.yaml's recipe) on a 10,000-image subset, 8 epochs at most, ASHA
pruning (~35-45 min, est. from conv4's ~20 s per 10,000 images an epoch on the AVX-512 CPU and
ASHA's ~40% of the grid's epochs):

    cifar-ops run --config jobs/configs/grids/conv4_sgd.yaml --set data.source=folder \\
        --set data.dir=.cache/data --set data.limit=10000 --set train.epochs=8 \\
        --set search.pruner=asha --set experiment=conv4-sgd-grid-subset
    cifar-ops report -e conv4-sgd-grid-subset -o grid.html   # leaderboard: the best point

`data.limit` caps each split (train, validation, held-out test) at 10,000 images. The point the
grid picked at a constant rate (`bench/search_efficiency.py --space conv4`: lr 0.05, no momentum,
batch 32), trained on a cosine anneal, held out 75.90%; the shipped point (lr 0.1 at batch 128,
one-cycle nesterov) lies outside the grid and held out 81.18%.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NO_WEIGHTS = "needs ImageNet weights (not downloadable here)"
COLUMNS = (
    "row",
    "config",
    "seed",
    "seed figure",
    "seed gap",
    "held-out test",
    "train",
    "gap",
    "gap (history)",
    "vs seed",
    "epochs",
    "wall",
    "peak memory",
    "note",
)


@dataclass(frozen=True)
class Row:
    """One seed model: its config, the seed's figure (a fraction) and what that figure measured."""

    name: str
    config: str
    seed: str
    figure: float
    measured_on: str = "test"  # "validation" where the seed reported no test figure
    seed_gap: float | None = None  # seed's train minus test/validation accuracy, points
    transfer_sets: tuple[str, ...] = ()  # transfer rows: overrides for the seed's variant


ROWS: tuple[Row, ...] = (
    Row("simple_cnn", "jobs/configs/simple_cnn.yaml", "004", 0.6747, seed_gap=17.8),
    Row("conv4_bn", "jobs/configs/conv4_sgd.yaml", "001", 0.8046, seed_gap=1.09),
    Row("custom_cnn", "jobs/configs/custom_cnn.yaml", "000", 0.83, "validation", 9.0),
    Row("vgg10", "jobs/configs/vgg10.yaml", "004", 0.8208, seed_gap=-1.8),
    Row("resnet20", "jobs/configs/resnet20.yaml", "004", 0.8770, seed_gap=3.1),
    Row("resnet20_fast", "jobs/configs/resnet20_fast.yaml", "004", 0.8770, seed_gap=3.1),
    Row("resnet_wide", "jobs/configs/resnet_wide.yaml", "002", 0.8874),
    Row("resnet_wide_fast", "jobs/configs/resnet_wide_fast.yaml", "002", 0.8874),
    Row(
        "mobilenetv2",
        "jobs/configs/mobilenetv2.yaml",
        "000",
        0.90,
        "validation",
        5.0,
        transfer_sets=("model.weights=imagenet",),
    ),
    Row(
        "efficientnetv2b0_96",
        "jobs/configs/efficientnetv2b0.yaml",
        "004",
        0.9042,
        seed_gap=-4.5,
        transfer_sets=(
            "model.weights=imagenet",
            "model.input_size=96",
            "model.dropout=0.3",
            "train.epochs=30",
            "train.fine_tune.epochs=30",
            "train.fine_tune.unfreeze_layers=30",
        ),
    ),
    Row(
        "efficientnetv2b0",
        "jobs/configs/efficientnetv2b0.yaml",
        "004",
        0.9397,
        seed_gap=-0.01,
        transfer_sets=("model.weights=imagenet",),
    ),
)


def data_sets(data_dir: Path | str) -> list[str]:
    """The shared JPEG folder as the data source (its held-out test part: data.test_split)."""
    return ["data.source=folder", f"data.dir={data_dir}"]


def run_command(row: Row, sets: list[str], run_id: str | None = None) -> list[str]:
    """`cifar-ops run` for a row, as argv (`python -m cifar_ops`: the interpreter running this)."""
    command = [sys.executable, "-m", "cifar_ops", "run", "--config", str(REPO / row.config)]
    command += ["--json"] + (["--run-id", run_id] if run_id else [])
    for item in [*row.transfer_sets, *sets]:
        command += ["--set", item]
    return command


def user_command(row: Row, sets: list[str]) -> str:
    """The same command as a user types it from the repository root."""
    words = ["cifar-ops", "run", "--config", row.config]
    for item in [*row.transfer_sets, *sets]:
        words += ["--set", item]
    return shlex.join(words)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stopping_with_this_script(child: subprocess.Popen[bytes]) -> Iterator[list[int]]:
    """A SIGTERM or SIGHUP to this script stops the training child too (as SIGTERM: `cifar-ops
    run` saves its checkpoint and exits 143, resumable). Without it, `kill` on the bench left its
    child training unseen beside the next row. Yields the signals received."""
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        child.send_signal(signal.SIGTERM)

    previous = {number: signal.signal(number, forward) for number in STOP_SIGNALS}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_row(row: Row, sets: list[str], workdir: Path, resume: str | None = None) -> dict[str, Any]:
    """Train one row in a child process (continuing run `resume` from its checkpoint); its
    headline numbers, epochs, wall time and peak RSS, both over every segment of the run."""
    from cifar_ops.warehouse.store import open_store

    earlier = earlier_segments(workdir, row, sets, resume) if resume else []
    run_id = resume or uuid.uuid4().hex
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CIFAR_OPS_DATABASE_URL": database_url(workdir),
        "CIFAR_OPS_ARTIFACTS": str(workdir / "runs"),
    }
    print(f"{row.name}: run {run_id} (log {logs / row.name}.log)", flush=True)
    start = time.perf_counter()
    with (
        open(logs / f"{row.name}.json", "wb") as out,
        open(logs / f"{row.name}.log", "ab" if resume else "wb") as err,  # a resume adds on
    ):
        child = subprocess.Popen(run_command(row, sets, run_id), stdout=out, stderr=err, env=env)
        with stopping_with_this_script(child) as received:
            _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    segment: dict[str, Any] = {
        "row": row.name,
        "run_id": run_id,
        "exit_code": child.returncode,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is KiB on Linux
        "sets": sets,
        "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if received:  # a stopped row is no result (the table keeps the row's last one), a segment
        append_jsonl(workdir / "segments.jsonl", segment)
        print(
            f"{row.name}: stopped by {signal.Signals(received[0]).name}; its run {run_id} exited "
            f"{child.returncode} (log {logs / row.name}.log); continue it with --only {row.name} "
            f"--resume {run_id} and the same --set options",
            file=sys.stderr,
        )
        raise SystemExit(128 + received[0])
    result = segment | {
        "wall_seconds": round(sum(s["wall_seconds"] for s in [*earlier, segment]), 1),
        # a segment written by hand (its bench died unrecorded: SIGKILL) may not know its peak
        "peak_rss_mib": max(s["peak_rss_mib"] or 0 for s in [*earlier, segment]),
        "segments": len(earlier) + 1,
    }
    payload = (logs / f"{row.name}.json").read_text()
    if child.returncode != 0 or not payload.strip():
        result["status"] = f"exit {child.returncode}, see {logs / row.name}.log"
        return result
    outcome = json.loads(payload)
    with open_store(database_url(workdir)) as store:
        epochs = store.epochs(run_id)
    result["epochs"] = len(epochs)
    metrics = outcome["metrics"]
    result |= {
        "status": outcome["status"],
        "test_accuracy": metrics["test_accuracy"],
        "test_loss": metrics["test_loss"],
        "train_accuracy": metrics["train_accuracy"],
        "overfitting_gap": metrics["overfitting_gap"],
        # the last epoch's training accuracy as Keras' history reports it (augmented batches,
        # dropout on): what the seeds' gaps were most likely measured on (seed 004 reports
        # negative ones, which un-augmented train images rarely give)
        "history_gap": epochs[-1].accuracy - metrics["test_accuracy"],
        "best_epoch": outcome["best_epoch"],
        "param_count": outcome["param_count"],
    }
    return result


def earlier_segments(workdir: Path, row: Row, sets: list[str], run_id: str) -> list[dict[str, Any]]:
    """The stopped segments of run `run_id` recorded in this workdir; refuses a run of another
    row, other --set options (another config: `cifar-ops run` would not resume it) or none."""
    path = workdir / "segments.jsonl"
    segments = [s for s in read_jsonl(path) if s["run_id"] == run_id]
    if not segments:
        raise SystemExit(
            f"--resume {run_id}: no stopped segment of that run in {path}; the run ids a `kill` "
            f"stopped are listed there"
        )
    first = segments[0]
    if first["row"] != row.name or first["sets"] != sets:
        raise SystemExit(
            f"--resume {run_id}: that run is row {first['row']} with --set "
            f"{' '.join(first['sets'])}; resume it with the same row and --set options"
        )
    return segments


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file this bench appends to (none before the first)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as log:
        log.write(json.dumps(record) + "\n")


def database_url(workdir: Path) -> str:
    return f"sqlite:///{(workdir / 'warehouse.db').resolve()}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def points(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:+.1f}"


def table_line(
    row: Row, result: dict[str, Any] | None, stopped: list[dict[str, Any]] | None = None
) -> list[str]:
    """One Markdown row: the seed's figure and gap beside this product's measurement. A run
    stopped after the row's last result (a new recipe's, say) is named in the note, with how to
    continue it, so a row never reads as settled while its newer run is unfinished."""
    seed_figure = percent(row.figure) + (" (val)" if row.measured_on == "validation" else "")
    seed_gap = "-" if row.seed_gap is None else f"{row.seed_gap:+.1f}"
    head = [row.name, f"`{Path(row.config).name}`", row.seed, seed_figure, seed_gap]
    if row.transfer_sets:
        note = f"{NO_WEIGHTS}; with weights: `{user_command(row, data_sets('.cache/data'))}`"
        return head + ["-"] * 8 + [note]
    progress = None
    if stopped:
        wall = sum(segment["wall_seconds"] for segment in stopped) / 60
        progress = (
            f"in progress: stopped after {len(stopped)} sitting(s), {wall:.1f} min so far; "
            f"continue with --resume {stopped[0]['run_id']}"
        )
    if result is None:
        return head + ["-"] * 8 + [progress or "not run"]
    test = result.get("test_accuracy")
    versus = "-" if test is None else f"{100 * (test - row.figure):+.2f}"
    status = str(result.get("status", ""))
    return head + [
        percent(test),
        percent(result.get("train_accuracy")),
        points(result.get("overfitting_gap")),
        points(result.get("history_gap")),
        versus,
        str(result.get("epochs", "-")),
        f"{result['wall_seconds'] / 60:.1f} min",
        f"{result['peak_rss_mib']:.0f} MiB",
        status if progress is None else f"{status}; a newer run {progress}",
    ]


def markdown_table(
    rows: list[Row],
    results: dict[str, dict[str, Any]],
    stopped: dict[str, list[dict[str, Any]]] | None = None,
) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        cells = table_line(row, results.get(row.name), (stopped or {}).get(row.name))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latest_results(workdir: Path) -> dict[str, dict[str, Any]]:
    """Each row's latest recorded result in this workdir."""
    return {result["row"]: result for result in read_jsonl(workdir / "results.jsonl")}


def stopped_runs(workdir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each row's latest stopped run that has no result and ended after the row's last result
    (records from before `ended_at` was kept count as older): its segments, oldest first."""
    results = read_jsonl(workdir / "results.jsonl")
    finished = {result["run_id"] for result in results}
    last_result = {result["row"]: result.get("ended_at", "") for result in results}
    by_run: dict[str, list[dict[str, Any]]] = {}
    for segment in read_jsonl(workdir / "segments.jsonl"):
        if segment["run_id"] not in finished:
            by_run.setdefault(segment["run_id"], []).append(segment)
    return {
        segments[0]["row"]: segments
        for segments in by_run.values()
        if segments[0]["row"] not in last_result
        or segments[-1].get("ended_at", "") > last_result[segments[0]["row"]]
    }


def report_command(workdir: Path, results: dict[str, dict[str, Any]]) -> str | None:
    """`cifar-ops report` over the succeeded parity runs: one page, with the comparison table."""
    run_ids = [r["run_id"] for r in results.values() if r.get("status") == "succeeded"]
    if not run_ids:
        return None
    env = f"CIFAR_OPS_DATABASE_URL={shlex.quote(database_url(workdir))}"
    output = shlex.quote(str(workdir / "parity.html"))
    return f"{env} cifar-ops report {' '.join(run_ids)} --details 0 -o {output}"


def select(names: str | None) -> list[Row]:
    if not names:
        return list(ROWS)
    by_name = {row.name: row for row in ROWS}
    unknown = [name for name in names.split(",") if name not in by_name]
    if unknown:
        raise SystemExit(f"--only: unknown row(s) {', '.join(unknown)}; rows: {', '.join(by_name)}")
    return [by_name[name] for name in names.split(",")]


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated rows (default: all)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every row's `cifar-ops run --set` (after the data source)",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".cache/data"))
    parser.add_argument("--workdir", type=Path, default=Path(".cache/seed-parity"))
    parser.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue this stopped run (from <workdir>/segments.jsonl) of the one --only row",
    )
    parser.add_argument("--plan", action="store_true", help="print the commands, train nothing")
    parser.add_argument(
        "--table",
        action="store_true",
        help="print the table (the --only rows, and every row with a result or a stopped run in "
        "--workdir) and the "
        "report command, train nothing",
    )
    args = parser.parse_args(argv)
    rows = select(args.only)
    if args.resume and (len(rows) != 1 or rows[0].transfer_sets):
        raise SystemExit(
            "--resume continues one run: name its row (not a transfer row) with --only"
        )
    sets = data_sets(args.data_dir.resolve()) + args.sets
    workdir = args.workdir.resolve()
    if args.plan:
        for row in rows:
            print(f"{row.name}: {user_command(row, data_sets(args.data_dir) + args.sets)}")
        return {}
    if args.table:
        return print_results(rows, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if row.transfer_sets:
            continue
        result = run_row(row, sets, workdir, args.resume)
        print(json.dumps(result), flush=True)
        append_jsonl(workdir / "results.jsonl", result)
    return print_results(rows, workdir)


def print_results(rows: list[Row], workdir: Path) -> dict[str, dict[str, Any]]:
    """The table of `rows` and of every row with a result or a stopped run, then the one-page
    report command."""
    results = latest_results(workdir)
    stopped = stopped_runs(workdir)
    shown = [row for row in ROWS if row in rows or row.name in results or row.name in stopped]
    print(markdown_table(shown, results, stopped))
    command = report_command(workdir, {r.name: results[r.name] for r in shown if r.name in results})
    if command:
        print(f"\nAll parity runs on one page:\n  {command}")
    return results


if __name__ == "__main__":
    main()
