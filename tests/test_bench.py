"""`dualasr bench`: the matrix runs end to end on a small ONNX export and writes schema-valid JSON,
Markdown and PNG plots; the --compare gate passes against itself and fails, readably, against a
baseline that was twice as fast. No timing assertions: timings are only checked to be present."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from dualasr.bench import (
    Cell,
    compare_results,
    load_results,
    parse_regression,
    parse_threads,
    plan_cells,
    select_utterances,
    validate_results,
)
from dualasr.bench.ratios import targets

HAVE_POCKETSPHINX = importlib.util.find_spec("pocketsphinx") is not None


def _bench(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualasr.cli", "bench", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def setup(random_checkpoint, tmp_path_factory):
    """ONNX fp32 + int8 export of the random tiny model and 3 short synthesized utterances."""
    from dualasr.corpus import build_corpus
    from dualasr.export.exporter import export_checkpoint

    root = tmp_path_factory.mktemp("bench")
    export_checkpoint(random_checkpoint, root / "export", ["onnx"], ["none", "int8"], [320])
    manifests = build_corpus(root / "corpus", num_train=0, num_valid=0, num_test=3, engines=("espeak-ng",),
                             augment=False, jobs=1)
    return root, manifests["test"]


@pytest.fixture(scope="module")
def bench_run(setup):
    root, data = setup
    out = root / "results"
    peers = "pocketsphinx" if HAVE_POCKETSPHINX else "none"
    proc = _bench(root / "export", "--data", data, "--backends", "onnxruntime,torch", "--peers", peers,
                  "--threads", "1", "--json", out / "bench.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def test_bench_writes_schema_valid_json_markdown_and_plots(bench_run):
    out, proc = bench_run
    results = load_results(out / "bench.json")  # raises on any schema problem
    assert validate_results(results) == []
    ids = {c["id"]: c for c in results["cells"]}
    for prec in ("fp32", "int8"):
        for mode in ("streaming-320ms", "full"):
            cell = ids[f"dualasr/onnxruntime/{prec}/{mode}/t1"]
            assert cell["status"] == "ok", cell.get("reason")
            m = cell["metrics"]
            for key in ("wer_pct", "rtf", "chunk_compute_ms_p50", "chunk_compute_ms_p90", "load_s", "peak_rss_mb",
                        "size_bytes", "harness_overhead_pct", "features_s", "search_s", "result_s"):
                assert m[key] is not None and m[key] >= 0, key
            # The recognizer's own stage timers: the split adds up to the compute outside the graphs.
            assert m["features_s"] + m["result_s"] + m["search_s"] + m["bookkeeping_s"] == pytest.approx(
                m["compute_s"] - m["model_s"])
            assert set(m["graph_calls"]) == {"encoder_streaming_320ms" if mode != "full" else "encoder_full",
                                             "predictor", "joiner"}
            assert len(cell["utterances"]) == 3
            assert cell["torch_imported"] is False  # the runtime cells stay torch-free
    for mode in ("streaming-320ms", "full"):
        # The torch column: the same runtime over the checkpoint's eager graphs, the same tokens.
        eager, ours = ids[f"dualasr/torch/fp32/{mode}/t1"], ids[f"dualasr/onnxruntime/fp32/{mode}/t1"]
        assert eager["status"] == "ok" and eager["torch_imported"] is True, eager.get("reason")
        assert [u["tokens"] for u in eager["utterances"]] == [u["tokens"] for u in ours["utterances"]]
    if HAVE_POCKETSPHINX:
        assert ids["pocketsphinx/pocketsphinx/native/streaming/t1"]["status"] == "ok"
    # Compute figures: FLOPs counted (torch is installed here) and the machine's matmul peak measured.
    assert results["flops"]["status"] == "ok"
    assert results["flops"]["encoder_streaming_step"]["320"] > 0
    assert results["peak"]["1"]["numpy_fp32_gflops"] > 0
    assert ids["dualasr/onnxruntime/fp32/full/t1"]["metrics"]["encoder_gflops_achieved"] > 0
    # Ratios and targets are reported (their values are the machine's, not asserted).
    assert results["headline"]["int8_vs_fp32"] and results["headline"]["streaming_vs_full"]
    assert {t["status"] for t in results["targets"]} <= {"pass", "fail", "n/a"}
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert "## Headline" in md and "dualasr/onnxruntime/int8/streaming-320ms/t1" in md
    for png in ("latency_cdf.png", "rtf_vs_wer.png", "lattice.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "cells ran" in proc.stdout


def test_compare_against_itself_passes(bench_run):
    out, _ = bench_run
    proc = _bench("--results", out / "bench.json", "--compare", out / "bench.json", "--max-regression", "10%")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout


def test_compare_against_a_twice_as_fast_baseline_fails_readably(bench_run, tmp_path):
    out, _ = bench_run
    base = json.loads((out / "bench.json").read_text())
    for c in base["cells"]:
        if c["status"] == "ok":
            c["metrics"]["rtf"] /= 2.0
    doctored = tmp_path / "baseline.json"
    doctored.write_text(json.dumps(base))
    proc = _bench("--results", out / "bench.json", "--compare", doctored, "--max-regression", "10%")
    assert proc.returncode != 0
    assert "FAILED" in proc.stderr
    assert "dualasr/onnxruntime/fp32/full/t1: RTF" in proc.stderr
    assert "+100.0%, limit +10.0%" in proc.stderr


def test_bench_runs_our_cells_with_beam_search_and_an_lm(setup, bench_run):
    """--lm FILE (beam search by default) reaches our cells, is recorded and reported, and a run
    with another search is not gated against a greedy baseline; a missing LM stops the bench
    before any cell runs."""
    root, data = setup
    text = root / "lm.txt"
    text.write_text("hello world this is a test\nthe cat sat on the mat\n")
    built = subprocess.run([sys.executable, "-m", "dualasr.cli", "lm", root / "export", "--out", root / "lm.npz",
                            "--sources", "", "--text", text, "--order", "3"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    out = root / "beam"
    proc = _bench(root / "export", "--data", data, "--backends", "onnxruntime", "--peers", "none", "--threads", "1",
                  "--precisions", "fp32", "--modes", "full", "--no-compute", "--lm", root / "lm.npz", "--beam", "2",
                  "--json", out / "bench.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "bench.json").read_text())
    assert results["settings"]["decoding"] == {"decoding": "beam", "beam": 2, "lm": str(root / "lm.npz")}
    assert [(c["status"], c["search"]) for c in results["cells"]] == [("ok", {"decoding": "beam", "beam": 2, "lm": True})]
    assert "Our search: beam 2 + LM `lm.npz` (the runtime's weights)" in (out / "bench.md").read_text()
    greedy, _ = bench_run
    proc = _bench("--results", out / "bench.json", "--compare", greedy / "bench.json", "--allow-missing")
    assert proc.returncode != 0 and "not compared" in proc.stderr and "Traceback" not in proc.stderr
    proc = _bench(root / "export", "--data", data, "--backends", "onnxruntime", "--peers", "none", "--threads", "1",
                  "--lm", root / "missing.npz", "--json", out / "none.json")
    assert proc.returncode != 0 and "missing.npz" in proc.stderr and "dualasr lm" in proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "none.json").exists()


# ----------------------------------------------------------------------------- pure functions


def _results(cells: list[dict]) -> dict:
    return {"schema_version": 1, "created": "now", "machine": {"arch": "x"}, "export": {}, "data": {}, "settings": {},
            "peak": {}, "flops": {}, "cells": cells, "headline": {}, "targets": []}


def _cell(cid: str, rtf: float, wer: float, size: int = 1000) -> dict:
    metrics = dict.fromkeys(("chunk_compute_ms_p50", "chunk_compute_ms_p90", "latency_at_50_s", "latency_at_90_s",
                             "first_partial_at_50_s", "load_s", "peak_rss_mb", "audio_s", "compute_s"), 1.0)
    metrics.update(rtf=rtf, wer_pct=wer, size_bytes=size)
    return {"id": cid, "system": "dualasr", "backend": "onnxruntime", "precision": "fp32", "mode": "full",
            "threads": 1, "status": "ok", "metrics": metrics, "utterances": []}


def test_gate_wer_is_absolute_points_and_size_relative():
    base = _results([_cell("a", 0.1, 10.0), _cell("b", 0.1, 10.0)])
    new = _results([_cell("a", 0.1, 10.9), _cell("b", 0.1, 10.0, size=1200)])
    ok, lines = compare_results(new, base, max_rel=0.10, max_wer_points=1.0)
    assert not ok
    text = "\n".join(lines)
    assert "a: WER" not in text  # +0.9 points is inside 1.0
    assert "b: size" in text and "+20.0%" in text
    new["cells"][0]["metrics"]["wer_pct"] = 11.5
    ok, lines = compare_results(new, base, max_rel=0.5, max_wer_points=1.0)
    assert not ok and "a: WER 10.00% -> 11.50% (+1.50 points, limit +1.00)" in "\n".join(lines)


def test_gate_does_not_compare_runs_with_different_searches():
    base = _results([_cell("a", 0.1, 10.0)])
    new = _results([_cell("a", 0.1, 10.0)])
    new["settings"]["decoding"] = {"decoding": "beam", "beam": 8}
    ok, lines = compare_results(new, base)
    assert not ok and "not compared" in lines[0] and "'beam': 8" in lines[0]
    base["settings"]["decoding"] = {"decoding": "greedy"}  # recorded greedy == unrecorded (older results)
    assert compare_results(base, _results([_cell("a", 0.1, 10.0)]))[0]


def test_gate_does_not_compare_runs_of_different_models():
    base = _results([_cell("a", 0.1, 10.0)])
    new = _results([_cell("a", 0.1, 10.0)])
    base["export"]["source_checkpoint_sha256"] = "a" * 64
    new["export"]["source_checkpoint_sha256"] = "b" * 64
    ok, lines = compare_results(new, base)
    assert not ok and "another model" in lines[0] and "record a new baseline" in lines[0]
    new["export"]["source_checkpoint_sha256"] = "a" * 64
    assert compare_results(new, base)[0]


def test_rounds_take_turns_and_keep_each_cells_fastest(setup, monkeypatch):
    """--rounds N: N turns over all cells (each a fresh subprocess of --repeat passes), not N in a
    row for one cell and then the next; every cell keeps its fastest round."""
    import dualasr.bench.run as bench_run_module

    root, data = setup
    compute = {"dualasr/onnxruntime/fp32/full/t1": [3.0, 1.0, 2.0], "dualasr/onnxruntime/int8/full/t1": [1.0, 2.0, 3.0]}
    calls: list[str] = []

    def fake_worker(kind, spec, threads, timeout, work):
        cid = Cell(**spec["cell"]).id
        assert kind == "cell" and spec["repeat"] == 2  # --repeat passes within each round
        cell = _cell(cid, rtf=compute[cid][calls.count(cid)], wer=10.0)
        cell["metrics"]["compute_s"] = compute[cid][calls.count(cid)]
        calls.append(cid)
        return cell

    monkeypatch.setattr(bench_run_module, "run_worker", fake_worker)
    results = bench_run_module.run_bench(root / "export", data, backends=["onnxruntime"], peers=[], threads=[1],
                                         modes=["full"], repeat=2, rounds=3, compute_figures=False)
    assert calls == [*compute] * 3
    assert {c["id"]: c["metrics"]["compute_s"] for c in results["cells"]} == {cid: min(v) for cid, v in compute.items()}
    assert results["settings"]["rounds"] == 3


def test_gate_notes_other_int8_cpu_features():
    """int8 kernels take other code paths with and without VNNI (or ARM's dot product): the gate
    says so when the baseline's CPU had other int8 features."""
    base, new = _results([_cell("a", 0.1, 10.0)]), _results([_cell("a", 0.1, 10.0)])
    base["machine"]["int8_cpu_features"] = ["avx2"]
    new["machine"]["int8_cpu_features"] = ["avx2", "avx512f", "avx512_vnni"]
    ok, lines = compare_results(new, base)
    assert ok and "int8 timings are not comparable" in lines[0]
    new["machine"]["int8_cpu_features"] = ["avx2"]
    assert "int8 timings" not in compare_results(new, base)[1][0]
    del base["machine"]["int8_cpu_features"]  # an older baseline: nothing recorded, nothing to say
    assert "int8 timings" not in compare_results(new, base)[1][0]


def test_gate_reports_cells_that_stopped_running():
    base = _results([_cell("a", 0.1, 10.0), _cell("b", 0.1, 10.0)])
    new = _results([_cell("a", 0.1, 10.0), {**_cell("b", 0.1, 10.0), "status": "error", "reason": "boom"}])
    ok, lines = compare_results(new, base)
    assert not ok and "b: ran in the baseline but not now (error: boom)" in "\n".join(lines)
    assert compare_results(new, base, allow_missing=True)[0]


def test_targets_are_issue_15s_goals_by_chunk_size_and_model_size():
    def cell(precision: str, mode: str, chunk: int | None, rtf: float, wer: float, overhead: float) -> dict:
        c = _cell(f"dualasr/onnxruntime/{precision}/{mode}-{chunk}ms/t1" if chunk else f"dualasr/onnxruntime/{precision}/full/t1",
                  rtf, wer)
        c.update(precision=precision, mode=mode, chunk_ms=chunk)
        c["metrics"].update(model_s=rtf, harness_overhead_pct=overhead)
        return c

    cells = [cell("fp32", "streaming", 320, 0.020, 10.0, 9.0), cell("int8", "streaming", 320, 0.010, 12.0, 9.0),
             cell("fp32", "streaming", 160, 0.026, 10.0, 20.0), cell("fp32", "full", None, 0.020, 9.0, 9.0),
             cell("int8", "full", None, 0.010, 9.0, 9.0)]
    results = _results(cells)
    results["export"] = {"chunk_ms": [320, 160], "random_init": False}
    results["flops"] = {"params": {"total": 8_000_000}, "streaming_over_full": {"320": 1.2, "160": 1.2}}
    status = {t["name"]: t["status"] for t in targets(results)}
    assert status["int8 vs fp32, streaming 320 ms, 1 thread, onnxruntime"] == "fail"  # 2x faster, but +2 WER points
    assert status["streaming 320 ms vs full compute (counted encoder FLOPs per second of audio)"] == "fail"  # > 1.15x
    assert status["streaming 160 ms vs full compute (counted encoder FLOPs per second of audio)"] == "pass"  # <= 1.3x
    assert status["streaming 320 ms vs full compute (measured model time, onnxruntime fp32, 1 thread)"] == "pass"  # 1.0x
    assert status["harness overhead dualasr/onnxruntime/fp32/streaming-320ms/t1"] == "pass"  # 9% <= 10%
    assert status["harness overhead dualasr/onnxruntime/fp32/streaming-160ms/t1"] == "fail"
    assert status["ours vs sherpa-onnx, same model"] == "n/a"

    del results["flops"]["params"]  # --no-compute: the model's size, and so its goal, is unknown
    target = next(t for t in targets(results) if t["name"] == "harness overhead dualasr/onnxruntime/fp32/streaming-320ms/t1")
    assert target["status"] == "n/a" and "parameters not counted" in target["goal"]

    results["flops"]["params"] = {"total": 1_000_000}
    results["export"]["random_init"] = True  # random weights: WER says nothing, speed alone decides
    results["flops"]["params"]["total"] = 1_000_000  # below phone size: 25% overhead allowed
    status = {t["name"]: t["status"] for t in targets(results)}
    assert status["int8 vs fp32, streaming 320 ms, 1 thread, onnxruntime"] == "pass"
    assert status["harness overhead dualasr/onnxruntime/fp32/streaming-160ms/t1"] == "pass"


def test_validate_results_names_the_problems():
    bad = _results([{**_cell("a", 0.1, 1.0), "status": "weird"}])
    bad["schema_version"] = 2
    del bad["cells"][0]["metrics"]["rtf"]
    errs = validate_results(bad)
    assert any("schema_version" in e for e in errs)
    assert any("cells[0].status" in e for e in errs)
    assert validate_results(_results([_cell("a", 0.1, 1.0)])) == []


def test_parse_regression_and_threads():
    assert parse_regression("10%") == pytest.approx(0.10)
    assert parse_regression("0.25") == pytest.approx(0.25)
    assert parse_regression("15") == pytest.approx(0.15)
    with pytest.raises(ValueError):
        parse_regression("ten")
    assert parse_threads("1,1")[0] == 1 and len(parse_threads("1,1")) == 1
    with pytest.raises(ValueError):
        parse_threads("0")


def test_plan_skips_what_the_export_lacks():
    manifest = {"streaming": [{"chunk_ms": 320}], "artifacts": {"onnx": {"fp32": {}, "int8": {}}},
                "checkpoint": "checkpoint.pt"}
    planned = plan_cells(manifest, ["onnxruntime", "executorch", "torch", "sherpa-onnx"], [], [1])
    ids = {c.id: reason for c, reason in planned}
    assert ids["dualasr/onnxruntime/int8/streaming-320ms/t1"] is None
    assert "no executorch fp32" in ids["dualasr/executorch/fp32/full/t1"]
    assert "dualasr/torch/int8/full/t1" not in ids  # eager reference is float only
    assert "no sherpa-onnx" in ids["dualasr/sherpa-onnx/fp32/streaming-320ms/t1"]
    assert Cell("dualasr", "onnxruntime", "fp32", "streaming", 160, 2).id == "dualasr/onnxruntime/fp32/streaming-160ms/t2"
    with pytest.raises(ValueError, match="not in the export"):
        plan_cells(manifest, ["onnxruntime"], [], [1], chunk_ms=[640])


def test_select_utterances_is_evenly_spaced():
    assert select_utterances(list(range(10)), 3) == [0, 3, 6]
    assert select_utterances(list(range(3)), 5) == [0, 1, 2]
