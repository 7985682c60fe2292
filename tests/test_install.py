"""A plain `pip install dualasr` is the torch-free runtime: `transcribe` and `bench` work with only
the base dependencies, commands that need an extra say which one, and a fresh venv holds no torch.

The fast tests run the CLI in a subprocess that cannot import any package that only an extra
installs (read from pyproject.toml), so a new import of scipy, torch, jiwer... on the runtime's
path fails here. The slow one installs this checkout into a fresh venv.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dualasr.metrics import wer

REPO = Path(__file__).resolve().parent.parent
ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
# Never in a plain install, whatever else the extras pull in.
NOT_IN_RUNTIME = {"torch", "executorch", "coremltools", "onnxscript", "onnx", "scipy", "jiwer", "matplotlib"}


def _dist(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group()).lower()


def extras_only_modules() -> set[str]:
    """Top-level modules of the distributions the extras name and the base dependencies do not."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {_dist(r) for r in project["dependencies"]}
    extra = {_dist(r) for reqs in project["optional-dependencies"].values() for r in reqs} - base - {"dualasr"}
    assert NOT_IN_RUNTIME <= extra and not NOT_IN_RUNTIME & base, "pyproject.toml: these belong in extras only"
    return {module for module, dists in importlib.metadata.packages_distributions().items()
            if {_dist(d) for d in dists} & extra and not {_dist(d) for d in dists} & base}


@pytest.fixture(scope="module")
def runtime_only_env(tmp_path_factory) -> dict:
    """Environment for a subprocess in which every extras-only module fails to import."""
    blocked = sorted(extras_only_modules())
    assert {"torch", "scipy", "jiwer", "matplotlib", "yaml"} <= set(blocked)
    d = tmp_path_factory.mktemp("runtime-only")
    (d / "sitecustomize.py").write_text(
        "import sys\n"
        f"BLOCKED = {set(blocked)!r}\n"
        "class _NotInstalled:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}' (only an extra installs it)\", name=name)\n"
        "sys.meta_path.insert(0, _NotInstalled())\n"
    )
    # Inherited by the bench's worker processes too.
    return {**os.environ, "PYTHONPATH": str(d), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> list[tuple[Path, str]]:
    """The two longest real held-out Asterisk prompts: (8 kHz WAV made by ffmpeg, reference text)."""
    from dualasr.corpus import read_asterisk_prompts, split_asterisk

    _, test = split_asterisk(read_asterisk_prompts())
    d = tmp_path_factory.mktemp("prompts")
    out = []
    for u in sorted(test, key=lambda u: (-len(u.text.split()), u.id))[:2]:
        wav = d / (u.id.replace("/", "_") + ".wav")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", u.audio, "-ar", "8000", str(wav)], check=True)
        out.append((wav, u.text))
    return out


def _dualasr(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualasr.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_blocked_modules_really_fail(runtime_only_env, tmp_path):
    code = "import sys\ntry:\n    import torch\nexcept ModuleNotFoundError:\n    sys.exit(0)\nsys.exit(1)"
    assert subprocess.run([sys.executable, "-c", code], env=runtime_only_env, cwd=tmp_path).returncode == 0


def test_transcribe_needs_only_the_runtime(runtime_only_env, prompts, tmp_path):
    """Real 8 kHz speech (resampled by the runtime) through the built-in export, both modes."""
    wavs = [str(w) for w, _ in prompts]
    for mode in ("streaming", "full"):
        full_env = _dualasr(["transcribe", *wavs, "--mode", mode, "--json"], {**os.environ, "OMP_NUM_THREADS": "1"},
                            tmp_path)
        runtime = _dualasr(["transcribe", *wavs, "--mode", mode, "--json"], runtime_only_env, tmp_path)
        assert runtime.returncode == 0, runtime.stderr
        texts = [f["text"] for f in json.loads(runtime.stdout)["files"]]
        assert texts == [f["text"] for f in json.loads(full_env.stdout)["files"]]
        assert any(texts), "the built-in model heard nothing in real speech"


def test_bench_needs_only_the_runtime(runtime_only_env, prompts, tmp_path):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps({"audio": str(w), "text": t}) + "\n" for w, t in prompts))
    export = REPO / "dualasr" / "assets" / "default" / "export"
    out = tmp_path / "bench.json"
    r = _dualasr(["bench", str(export), "--data", str(manifest), "--backends", "onnxruntime", "--peers", "none",
                  "--threads", "1", "--precisions", "int8", "--modes", "streaming", "--no-compute", "--json", str(out)],
                 runtime_only_env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no plots: matplotlib is not installed" in r.stderr
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["status"] == "ok" and cell["torch_imported"] is False
    utts = cell["utterances"]
    assert cell["metrics"]["wer_pct"] == pytest.approx(100 * wer([u["ref"] for u in utts], [u["hyp"] for u in utts]))
    assert cell["metrics"]["rtf"] > 0
    r = _dualasr(["bench", str(export), "--data", str(manifest), "--plots", str(tmp_path / "p")], runtime_only_env,
                 tmp_path)
    assert r.returncode == 2 and "dualasr[bench]" in r.stderr and not (tmp_path / "p").exists()


@pytest.mark.parametrize("args, extra", [
    (["export", "--out", "never-written"], "export"),
    (["verify", "never-written"], "export"),
    (["train", "--out", "never-written"], "train"),
    (["transcribe", "--backend", "torch", "x.wav"], "export"),
])
def test_commands_that_need_an_extra_say_which(runtime_only_env, tmp_path, args, extra):
    (tmp_path / "x.wav").write_bytes(b"")
    r = _dualasr(args, runtime_only_env, tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"pip install 'dualasr[{extra}]'" in lines[0]
    assert not (tmp_path / "never-written").exists()


@pytest.mark.slow
def test_plain_pip_install_is_the_runtime(tmp_path, prompts):
    """`pip install .` into a fresh venv: no torch & co., and `dualasr transcribe` works as here."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    had_build = (REPO / "build").exists()
    r = subprocess.run([*pip, "install", "-q", str(REPO)], capture_output=True, text=True, timeout=1200)
    if not had_build:
        shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' build folder, made by that install
    assert r.returncode == 0, r.stderr[-3000:]
    listed = json.loads(subprocess.run([*pip, "list", "--format=json"], capture_output=True, text=True,
                                       check=True).stdout)
    installed = {_dist(p["name"]) for p in listed}
    assert not installed & NOT_IN_RUNTIME, f"a plain install pulled {sorted(installed & NOT_IN_RUNTIME)}"
    wav = str(prompts[0][0])
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    fresh = subprocess.run([str(venv / "bin" / "dualasr"), "transcribe", wav], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    here = _dualasr(["transcribe", wav], {**os.environ, "OMP_NUM_THREADS": "1"}, tmp_path)
    assert fresh.stdout.splitlines()[0] == here.stdout.splitlines()[0]
    assert fresh.stdout.startswith(f"{wav}: ") and len(fresh.stdout.splitlines()[0]) > len(wav) + 2
