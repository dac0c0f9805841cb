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
    # The dense default stands for the CNN presets: the recipe and a preset, back to back, are what is tested.
    argv = ["--versus-peer", "tutorial", "--epochs", "2", "--seeds", "3", "--data", str(tiny_data)]
    assert benchmark_script.main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    report = json.loads(out.with_suffix(".json").read_text())
    peer, preset = report["runs"]
    assert [(run["preset"], run["seed"]) for run in (peer, preset)] == [
        (benchmark_script.PEER_NAME, 3),
        ("tutorial", 3),
    ]
    assert len(peer["epochs"]) == benchmark_script.PEER_EPOCHS and len(preset["epochs"]) == 2
    assert preset["ratio"] == preset["wall_seconds"] / peer["wall_seconds"]
    assert out.with_suffix(".md").read_text() == benchmark_script.versus_peer_markdown(report)


def versus_peer_run(name: str, seed: int, wall: float, accuracy: float, ratio: float, seconds: list) -> dict:
    epochs = [{"seconds": s, "val_accuracy": a} for s, a in seconds]
    return {"preset": name, "seed": seed, "wall_seconds": wall, "accuracy": accuracy, "ratio": ratio, "epochs": epochs}


def test_the_versus_peer_table_gives_each_run_and_each_presets_range(benchmark_script):
    peer = benchmark_script.PEER_NAME
    report = {
        "seeds": [3, 4],
        "machine": "x86_64, 2 CPU cores",
        "created": "2026-12-02",
        "runs": [
            versus_peer_run(peer, 3, 150.0, 0.9860, 1.0, [(10.0, 0.97), (20.0, 0.986)]),
            versus_peer_run("cnn-fast", 3, 180.0, 0.9941, 1.2, [(20.0, 0.99), (40.0, 0.9941)]),
            versus_peer_run(peer, 4, 160.0, 0.9870, 1.0, [(10.0, 0.987)]),
            versus_peer_run("cnn-fast", 4, 144.0, 0.9921, 0.9, [(20.0, 0.985), (40.0, 0.9921)]),
        ],
    }
    table = benchmark_script.versus_peer_markdown(report)
    assert "| run | seed | wall s | x recipe | validation accuracy | to 0.99 | to 0.994 | to 0.995 |" in table
    assert f"| {peer} | 3 | 150.0 | 1.00 | 0.9860 | not reached | not reached | not reached |" in table
    assert "| `--preset cnn-fast` | 3 | 180.0 | 1.20 | 0.9941 | 20 s | 40 s | not reached |" in table
    assert "| `--preset cnn-fast` | 4 | 144.0 | 0.90 | 0.9921 | 40 s | not reached | not reached |" in table
    assert f"| {peer} | 2 | 0.9860..0.9870 (0.9865) | 1.00 |" in table
    assert "| `--preset cnn-fast` | 2 | 0.9921..0.9941 (0.9931) | 1.05 |" in table
    assert "Seeds 3, 4; x86_64, 2 CPU cores; 2026-12-02." in table


@pytest.mark.slow
def test_profile_takes_a_presets_training_step_apart(benchmark_script, tiny_data, tmp_path, capsys):
    out = tmp_path / "profile"
    assert benchmark_script.main(["--profile", "cnn-fast", "--data", str(tiny_data), "--out", str(out)]) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())["profiles"]
    assert row["preset"] == "cnn-fast" and all(row[part] >= 0 for part in ("fit_step", "augmentation", "forward"))
    assert row["backward"] == pytest.approx(row["forward_backward"] - row["forward"])
    assert row["optimizer_and_overhead"] == pytest.approx(row["fit_step"] - row["forward_backward"])
    table = out.with_suffix(".md").read_text()
    assert "| preset | fit step | input pipeline | augmentation | forward | backward |" in table
