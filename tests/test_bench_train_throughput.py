"""bench/train_throughput.py runs end to end on a tiny archive it is given (the real bench reads
the shared JPEGs): every method trains and is timed, the grouped device method joins with
`--steps-per-execution`, and the summary carries a rate, a ratio and a spread (of wall and of
CPU seconds) for each; a count flag below 1 is refused before anything is read."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from cifar_ops.warehouse.synthetic import CIFAR10_CLASSES
from tests.bench_scripts import load_bench
from tests.test_data_fixtures import write_image


def tiny_archive(tmp_path: Path, per_class: int) -> Path:
    """The shared archive's layout, `train/<class>/<NNNN>.jpg`, one solid colour per class."""
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for number, name in enumerate(CIFAR10_CLASSES):
            for index in range(per_class + 1):  # one more than the bench takes
                path = tmp_path / "jpeg" / name / f"{index:04d}.jpg"
                write_image(path, (25 * number, 100, 200 - 20 * number), size=(32, 32))
                tar.add(path, arcname=f"train/{name}/{index:04d}.jpg")
    return archive


def test_every_method_is_timed_and_compared_with_the_generator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench("train_throughput")
    archive = tiny_archive(tmp_path, per_class=4)
    monkeypatch.setenv("CIFAR_OPS_DATA_CACHE", str(tmp_path / "cache"))
    flags = "--per-class 4 --batch-size 8 --epochs 1 --repeats 1 --steps-per-execution 2"
    monkeypatch.setattr(
        "sys.argv", ["train_throughput.py", "--archive", str(archive), *flags.split()]
    )
    bench.main()
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("\n{") + 1 :])

    assert len(list((tmp_path / "cache").rglob("*.jpg"))) == 40  # 4 of each class's 5
    assert summary["steps_per_execution"] == 2
    methods = ("baseline", "pipeline", "device", "device_grouped")
    assert set(summary["epoch_spread"]) == set(summary["epoch_cpu_spread"]) == set(methods)
    for method in methods:
        assert summary["train"][f"{method}_images_per_s"]["mean"] > 0
    for method in methods[1:]:
        assert summary["train"][f"{method}_ratio"]["mean"] > 0
        assert f"training: {method} / baseline = " in out


@pytest.mark.parametrize("flag", ["--steps-per-execution", "--repeats", "--per-class"])
def test_a_count_below_one_is_refused(
    flag: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench("train_throughput")
    monkeypatch.setattr("sys.argv", ["train_throughput.py", flag, "0"])
    with pytest.raises(SystemExit) as exited:
        bench.main()
    assert exited.value.code == 2
    assert f"argument {flag}: must be at least 1, got 0" in capsys.readouterr().err
