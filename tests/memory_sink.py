"""An in-memory `RunSink` for engine unit tests: keeps what a run writes, upserting epochs."""

from __future__ import annotations

from dataclasses import dataclass, field

from cifar_ops.records import EpochRecord, EvaluationRecord, RunFinish, RunStart


@dataclass
class MemorySink:
    starts: list[RunStart] = field(default_factory=list)
    epochs: dict[str, dict[int, EpochRecord]] = field(default_factory=dict)
    epoch_writes: list[tuple[str, int]] = field(default_factory=list)
    evaluations: dict[str, EvaluationRecord] = field(default_factory=dict)
    finishes: dict[str, RunFinish] = field(default_factory=dict)

    def start_run(self, start: RunStart) -> None:
        self.starts.append(start)
        self.finishes.pop(start.run_id, None)

    def log_epoch(self, run_id: str, epoch: EpochRecord) -> None:
        self.epochs.setdefault(run_id, {})[epoch.epoch] = epoch
        self.epoch_writes.append((run_id, epoch.epoch))

    def log_evaluation(self, run_id: str, evaluation: EvaluationRecord) -> None:
        self.evaluations[run_id] = evaluation

    def finish_run(self, run_id: str, finish: RunFinish) -> None:
        self.finishes[run_id] = finish

    def last_epoch(self, run_id: str) -> int:
        return max(self.epochs.get(run_id, {}) or [0])

    def history(self, run_id: str) -> list[EpochRecord]:
        return [self.epochs[run_id][e] for e in sorted(self.epochs.get(run_id, {}))]
