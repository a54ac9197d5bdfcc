"""bench/search_efficiency.py runs end to end on a tiny synthetic task (the real run is scheduled
on the shared JPEGs): every search runs, epochs are counted from the warehouse, the table prints.
No timing or accuracy is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_scripts import load_bench
from tests.engine_helpers import TINY


def test_the_real_space_has_eighteen_points() -> None:
    bench = load_bench("search_efficiency")
    sizes = [len(values) for values in bench.SPACE.values()]
    assert sizes[0] * sizes[1] * sizes[2] == 18
    assert set(bench.searches(bench.SPACE, 6)) == {"grid", "asha", "median", "tpe", "random"}


def test_both_spaces_give_valid_search_configs(tmp_path: Path) -> None:
    """`--space fast` and `--space conv4` (seed 001's 24-point grid) load as search configs whose
    grids have the expected sizes; nothing is trained."""
    import yaml

    from cifar_ops.config import SearchConfig, load_config

    bench = load_bench("search_efficiency")
    for name, size in (("fast", 18), ("conv4", 24)):
        make_base, space = bench.SPACES[name]
        base = make_base(str(tmp_path), 4000, 9)
        for search_name, search in bench.searches(space, 6).items():
            path = tmp_path / f"{name}-{search_name}.yaml"
            path.write_text(yaml.safe_dump({**base, "experiment": "x", "search": search}))
            loaded = load_config(path)
            assert isinstance(loaded, SearchConfig)
            if search_name == "grid":
                assert len(loaded.trials) == size


def test_bench_runs_every_search_and_counts_their_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench("search_efficiency")
    base = {k: v for k, v in json.loads(json.dumps(TINY)).items() if k != "experiment"}
    base["train"] = {"epochs": 2, "batch_size": 32}
    space = {"optimizer.learning_rate": [0.01, 1e-8], "model.dense_units": [8, 16]}
    args = [
        "--workdir",
        str(tmp_path / "bench"),
        "--sampled-trials",
        "2",
        "--only",
        "grid,asha,tpe,random",
    ]
    results = bench.main(args, base=base, space=space)
    by_name = {r["search"]: r for r in results}
    assert by_name["grid"]["trials"] == 4 and by_name["grid"]["epochs"] == 8
    assert by_name["asha"]["trials"] == 4 and by_name["asha"]["epochs"] <= 8
    assert by_name["asha"]["epochs"] == 8 - by_name["asha"]["pruned"]  # pruned after epoch 1
    assert by_name["tpe"]["trials"] == by_name["random"]["trials"] == 2
    assert by_name["tpe"]["epochs"] == by_name["random"]["epochs"] == 4  # the same budget
    out = capsys.readouterr().out
    assert [json.loads(line)["search"] for line in out.splitlines()[:4]] == [
        "grid",
        "asha",
        "tpe",
        "random",
    ]
    assert "of grid" in out and "100%" in out and "picked test" in out
    from cifar_ops.warehouse.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'bench' / 'warehouse.db'}") as store:
        grid = [r for r in store.list_runs(experiment="bench-grid") if r.test_accuracy is not None]
    best_val = max(r.val_accuracy for r in grid)  # the pick: best validation, not best test
    picks = {r.test_accuracy for r in grid if r.val_accuracy == best_val}
    assert by_name["grid"]["picked_test_accuracy"] in picks
    assert by_name["grid"]["best_test_accuracy"] == max(r.test_accuracy for r in grid)
