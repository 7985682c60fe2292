"""benchmarks/ablation.py: the grid covers the paper's Table-4 variants and the table aggregates seeds."""

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grid_has_every_table4_variant_and_extra_seeds_for_key_rows(ablation):
    variants = list(ablation.VARIANTS) + [ablation.CONTEXTNET]
    jobs = ablation.plan_jobs(variants, [0], [1])
    assert {v for v, _ in jobs} >= {"streaming-only", "full-only", "dual, random sampling", "dual, joint",
                                    *(f"dual, joint + distill {s:+d}" for s in range(-2, 3))}
    assert sorted(v for v, s in jobs if s == 1) == sorted(ablation.KEY_VARIANTS)
    assert len(jobs) == len(set(jobs)) == len(variants) + len(ablation.KEY_VARIANTS)
    assert len({ablation.run_name(v, s) for v, s in jobs}) == len(jobs)  # one folder per run


def test_train_command_sets_the_variant_budget_and_seed(ablation, tmp_path):
    args = argparse.Namespace(steps=300, train="a.jsonl", valid="b.jsonl")
    cmd = ablation.train_command("dual, joint + distill -2", 1, args, tmp_path)
    sets = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--set"]
    assert {"train.mode=joint", "train.distill_weight=0.5", "train.distill_shift=-2", "train.seed=1",
            "train.max_steps=300", "train.max_minutes=0", "data.train=a.jsonl"} <= set(sets)
    assert cmd[cmd.index("--config") + 1] == "tiny" and "--resume" in cmd
    assert ablation.train_command(ablation.CONTEXTNET, 0, args, tmp_path)[5] == "tiny-contextnet"


def test_markdown_reports_mean_and_range_over_seeds(ablation):
    rows = [{"variant": "dual, joint", "seed": s, "params": 0.96e6, "tts/wer_streaming": w, "real/wer_full": 50.0}
            for s, w in ((0, 40.0), (1, 44.0))]
    table = ablation.to_markdown(rows, 10)
    line = next(l for l in table.splitlines() if l.startswith("| dual, joint"))
    assert "| 2 | 0.96M | 42.0 (40.0–44.0) | – | – | 50.0 (50.0–50.0) |" in line
