"""`scripts/benchmark.py` in-process: bad input is one line (exit 2), and OUT.md/OUT.json are replaced as a pair."""

from __future__ import annotations

import importlib.util
import json

import pytest

from src.core.errors import EXIT_USER
from tests.helpers import REPO_ROOT


@pytest.fixture(scope="module")
def benchmark_script():
    spec = importlib.util.spec_from_file_location("benchmark", REPO_ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--epochs", "0"], "--epochs and --repeats must be >= 1"),
        (["--time-to-accuracy", "tutorial", "--epochs", "0"], "--epochs must be >= 1"),
        (["--data", "not-data.txt"], "expected a folder with train.csv and test.csv, or a zip of them"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(benchmark_script, argv, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-data.txt").write_text("not a zip")
    assert benchmark_script.main(argv) == EXIT_USER
    error = capsys.readouterr().err
    assert error.startswith("error: ") and fragment in error and error.count("\n") == 1, error


def test_a_report_that_cannot_be_written_leaves_the_previous_pair(benchmark_script, tmp_path):
    out = tmp_path / "benchmark"
    previous = {suffix: f"previous {suffix}\n" for suffix in (".md", ".json")}
    for suffix, text in previous.items():
        out.with_suffix(suffix).write_text(text)
    with pytest.raises(TypeError):
        benchmark_script.write_report(out, {"rows": object()}, "| new table |\n")  # not JSON
    assert {suffix: out.with_suffix(suffix).read_text() for suffix in previous} == previous
    assert sorted(path.name for path in tmp_path.iterdir()) == ["benchmark.json", "benchmark.md"]


@pytest.mark.slow
def test_versus_peer_times_the_recipe_and_each_preset_in_one_run(benchmark_script, tiny_data, tmp_path, capsys):
    out = tmp_path / "versus"
    argv = ["--versus-peer", "cnn-fast", "--epochs", "2", "--seeds", "3", "4", "--data", str(tiny_data)]
    assert benchmark_script.main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    report = json.loads(out.with_suffix(".json").read_text())
    runs = report["runs"]
    assert [(run["preset"], run["seed"]) for run in runs] == [
        (benchmark_script.PEER_NAME, 3),
        ("cnn-fast", 3),
        (benchmark_script.PEER_NAME, 4),
        ("cnn-fast", 4),
    ]
    assert len(runs[0]["epochs"]) == benchmark_script.PEER_EPOCHS and len(runs[1]["epochs"]) == 2
    table = out.with_suffix(".md").read_text()
    assert "| run | seed | wall s | x recipe | validation accuracy | to 0.99 | to 0.994 | to 0.995 |" in table
    assert f"| {benchmark_script.PEER_NAME} | 3 | {runs[0]['wall_seconds']:.1f} | 1.00 |" in table
    # Each preset run is compared with the recipe run of its own seed, just before it.
    ratio = runs[3]["wall_seconds"] / runs[2]["wall_seconds"]
    assert (
        f"| `--preset cnn-fast` | 4 | {runs[3]['wall_seconds']:.1f} | {ratio:.2f} | {runs[3]['accuracy']:.4f} |"
        in table
    )
    low, high = sorted(run["accuracy"] for run in runs[1::2])
    assert f"| `--preset cnn-fast` | 2 | {low:.4f}..{high:.4f} (" in table


@pytest.mark.slow
def test_profile_takes_a_presets_training_step_apart(benchmark_script, tiny_data, tmp_path, capsys):
    out = tmp_path / "profile"
    assert benchmark_script.main(["--profile", "cnn", "--data", str(tiny_data), "--out", str(out)]) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())["profiles"]
    assert row["preset"] == "cnn" and all(row[part] >= 0 for part in ("fit_step", "augmentation", "forward"))
    assert row["backward"] == pytest.approx(row["forward_backward"] - row["forward"])
    assert row["optimizer_and_overhead"] == pytest.approx(row["fit_step"] - row["forward_backward"])
    table = out.with_suffix(".md").read_text()
    assert "| preset | fit step | input pipeline | augmentation | forward | backward |" in table
