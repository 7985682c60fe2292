#!/usr/bin/env python3
"""`make test-arm`: the torch-free runtime on aarch64 Linux (under qemu-user) gives x86's transcripts.

1. host: qemu-user-static, binfmt-support and debootstrap from apt; qemu-aarch64 registered with
   binfmt_misc (so arm64 programs run, and start each other, inside a chroot);
2. a Debian bookworm arm64 root filesystem (debootstrap --foreign, second stage under qemu), cached
   in $DUALASR_ARM_ROOTFS (default .cache/arm64-bookworm, gitignored);
3. a venv in it holding this checkout's wheel, its dependencies taken from PyPI's aarch64 wheels
   (--only-binary :all:, nothing compiled); its `pip list` must hold none of FORBIDDEN;
4. real speech: held-out Asterisk prompts (benchmarks/data/asterisk_real_test.jsonl, one speaker,
   G.722) decoded on the host to WAV at 16 kHz, and a few at 8 kHz and 44.1 kHz stereo, so the
   aarch64 side resamples too;
5. `dualasr transcribe --json` with the built-in export, streaming and full, fp32 and int8, here
   (x86, this checkout) and inside the arm64 root (the installed wheel);
6. benchmarks/results/arm64_qemu.json: every transcript of both sides; exit 1 unless the token ids
   (and so the text) are equal everywhere.

Reruns reuse the root filesystem and the venv (the wheel is reinstalled). Emulated timings mean
nothing, so none are reported. Needs root (apt, mount, chroot) and network access to Debian's
mirror and PyPI the first time.

`--record-baseline` instead runs the ARM CI bench (scripts/arm_bench.sh) in the arm64 root and
writes benchmarks/results/baseline-aarch64.json, the CI gate's baseline until one is recorded on
the runner: its WERs and sizes are aarch64's, its RTFs are emulated (far slower than any runner).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS = Path(os.environ.get("DUALASR_ARM_ROOTFS", REPO / ".cache" / "arm64-bookworm")).resolve()
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
ROOTFS_PACKAGES = "python3,python3-venv,ca-certificates"
ROOTFS_DONE = ".dualasr-rootfs-done"  # written last: a root filesystem without it is unfinished
ROOTFS_OURS = ".dualasr-rootfs-partial"  # written first: an unfinished one with it is ours to remove
VENV = "/opt/dualasr-venv"  # inside the root filesystem
DEPS_STAMP = ".dualasr-dependencies"  # in VENV: the base dependencies it was made for
WORK = "/tmp/dualasr-arm"  # inside the root filesystem: wheel and audio
FORBIDDEN = ("torch", "executorch", "coremltools", "onnxscript", "onnx", "scipy", "jiwer", "matplotlib")
TEST_SET = REPO / "benchmarks" / "data" / "asterisk_real_test.jsonl"  # held-out real prompts (G.722)
NUM_PROMPTS = 8
# (rate, channels) of extra copies of the first prompts: the runtime resamples and mixes down these.
EXTRA_FORMATS = ((8000, 1), (8000, 1), (44100, 2))
CONFIGS = [(mode, precision) for mode in ("streaming", "full") for precision in ("fp32", "int8")]
RESULTS = REPO / "benchmarks" / "results" / "arm64_qemu.json"
BASELINE = REPO / "benchmarks" / "results" / "baseline-aarch64.json"


class CheckError(Exception):
    """A precondition or step failed; the message says what to do."""


def run(cmd: list[str], capture: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run cmd; on failure raise CheckError with the command and the tail of its output."""
    proc = subprocess.run(cmd, capture_output=capture, text=True, **kw)
    if proc.returncode != 0:
        tail = " | ".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-6:])
        raise CheckError(f"`{' '.join(map(str, cmd))}` exited with {proc.returncode}: {tail}")
    return proc


# ---------------------------------------------------------------------------- host and root filesystem


def ensure_host() -> None:
    if os.geteuid() != 0:
        raise CheckError("needs root (apt, mount, chroot): run `sudo make test-arm`")
    if platform.machine() not in ("x86_64", "AMD64"):
        raise CheckError(f"compares aarch64 against x86_64 and runs on x86_64, not {platform.machine()}")
    if importlib.util.find_spec("dualasr") is None:
        raise CheckError(f"{sys.executable} has no dualasr: run with the Python of `make setup`, "
                         "e.g. sudo make test-arm PYTHON=$(command -v python3)")
    if shutil.which("ffmpeg") is None:
        raise CheckError("ffmpeg not found: run `make setup` first")
    tools = {"qemu-aarch64-static": "qemu-user-static", "update-binfmts": "binfmt-support",
             "debootstrap": "debootstrap"}
    missing = [pkg for tool, pkg in tools.items() if shutil.which(tool) is None]
    if missing:
        print(f"test-arm: installing {' '.join(missing)} (apt)", flush=True)
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        raise CheckError("qemu-aarch64 is not registered with binfmt_misc; run `update-binfmts --enable qemu-aarch64`")


def _mounts_under(path: Path) -> list[str]:
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [p for p in points if p == str(path) or p.startswith(str(path) + "/")]


def ensure_rootfs() -> None:
    """A Debian arm64 root filesystem at ROOTFS, made once."""
    if (ROOTFS / ROOTFS_DONE).is_file():
        return
    if ROOTFS.exists():
        if not (ROOTFS / ROOTFS_OURS).is_file():
            raise CheckError(f"{ROOTFS} exists and was not made by test-arm; move it away or set DUALASR_ARM_ROOTFS")
        if _mounts_under(ROOTFS):
            mounts = ", ".join(_mounts_under(ROOTFS))
            raise CheckError(f"an unfinished {ROOTFS} still has mounts: {mounts}; unmount them")
        print(f"test-arm: removing the unfinished {ROOTFS}", flush=True)
        shutil.rmtree(ROOTFS)
    ROOTFS.mkdir(parents=True)
    (ROOTFS / ROOTFS_OURS).touch()
    t0 = time.time()
    print(f"test-arm: debootstrap {SUITE} arm64 into {ROOTFS} (first run only; the second stage runs emulated)",
          flush=True)
    run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", f"--include={ROOTFS_PACKAGES}",
         SUITE, str(ROOTFS), MIRROR])
    shutil.copy2(shutil.which("qemu-aarch64-static"), ROOTFS / "usr" / "bin")
    run(["chroot", str(ROOTFS), "/debootstrap/debootstrap", "--second-stage"])
    (ROOTFS / ROOTFS_DONE).write_text(f"{SUITE} arm64 {ROOTFS_PACKAGES}\n")
    (ROOTFS / ROOTFS_OURS).unlink()
    print(f"test-arm: root filesystem ready ({time.time() - t0:.0f} s)", flush=True)


def host_ca_bundle() -> str:
    """The certificate bundle this machine's pip verifies PyPI with."""
    configured = [os.environ.get(v) for v in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")]
    pip_cert = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.cert"],
                              capture_output=True, text=True).stdout.strip()
    for path in [*configured, pip_cert, ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt"]:
        if path and Path(path).is_file():
            return path
    raise CheckError("no CA certificate bundle found for pip; set PIP_CERT")


class Chroot:
    """/proc (and /dev when the root filesystem has no device nodes) mounted for as long as the
    block runs; commands run there with a clean environment."""

    def __enter__(self) -> "Chroot":
        self.mounted: list[Path] = []
        shutil.copy2("/etc/resolv.conf", ROOTFS / "etc" / "resolv.conf")  # pip reaches PyPI by name
        # pip there trusts what pip here trusts (a TLS-inspecting proxy's CA, say), not only Debian's CAs.
        (ROOTFS / WORK.lstrip("/")).mkdir(parents=True, exist_ok=True)
        shutil.copy2(host_ca_bundle(), ROOTFS / WORK.lstrip("/") / "host-ca.pem")
        if not (ROOTFS / "proc" / "self").exists():
            self._mount(["-t", "proc", "proc"], ROOTFS / "proc")
        # No /sys: onnxruntime's cpuinfo parses the host's CPU topology there and crashes under
        # qemu-user; without it onnxruntime warns and uses its baseline aarch64 kernels.
        if not (ROOTFS / "dev" / "null").is_char_device():
            self._mount(["--bind", "/dev"], ROOTFS / "dev")
        return self

    def _mount(self, how: list[str], target: Path) -> None:
        run(["mount", *how, str(target)])
        self.mounted.append(target)

    def __exit__(self, *exc) -> None:
        for target in reversed(self.mounted):
            subprocess.run(["umount", str(target)], check=False)

    def run(self, cmd: list[str], check: bool = True, env: list[str] = ()) -> subprocess.CompletedProcess:
        """cmd inside the root; env: extra NAME=value settings (later ones win)."""
        base = ["HOME=/root", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "OMP_NUM_THREADS=1",
                "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_INPUT=1", f"PIP_CERT={WORK}/host-ca.pem"]
        full = ["chroot", str(ROOTFS), "/usr/bin/env", "-i", *base, *env, *cmd]
        return run(full) if check else subprocess.run(full, capture_output=True, text=True)


def base_dependencies() -> list[str]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]


def install_wheel(chroot: Chroot) -> list[dict]:
    """This checkout as a wheel in the arm64 venv, dependencies from PyPI; -> its `pip list`."""
    with tempfile.TemporaryDirectory(prefix="dualasr-wheel-") as tmp:
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp, str(REPO)])
        (wheel,) = Path(tmp).glob("dualasr-*.whl")
        work = ROOTFS / WORK.lstrip("/")
        work.mkdir(parents=True, exist_ok=True)
        for old in work.glob("dualasr-*.whl"):
            old.unlink()
        shutil.copy2(wheel, work / wheel.name)
    # A new venv whenever the dependencies change, so `pip list` shows exactly what they pull in.
    venv, deps = ROOTFS / VENV.lstrip("/"), "\n".join(base_dependencies()) + "\n"
    stamp = venv / DEPS_STAMP
    if not (venv / "bin" / "python").exists() or not stamp.is_file() or stamp.read_text() != deps:
        print(f"test-arm: creating {VENV} in the arm64 root", flush=True)
        shutil.rmtree(venv, ignore_errors=True)  # inside our root filesystem, made by this script
        chroot.run(["python3", "-m", "venv", VENV])
        stamp.write_text(deps)
    print("test-arm: installing the wheel on aarch64 (dependencies: PyPI aarch64 wheels only)", flush=True)
    chroot.run([f"{VENV}/bin/pip", "uninstall", "-q", "-y", "dualasr"])  # same version, new code
    chroot.run([f"{VENV}/bin/pip", "install", "-q", "--only-binary=:all:", f"{WORK}/{wheel.name}"])
    return json.loads(chroot.run([f"{VENV}/bin/pip", "list", "--format=json"]).stdout)


# ---------------------------------------------------------------------------- audio and transcripts


def held_out_prompts() -> list[dict]:
    """The held-out real prompts: [{"id", "audio", "text"}], checked to be installed."""
    prompts = [json.loads(line) for line in TEST_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [p["audio"] for p in prompts if not Path(p["audio"]).is_file()]
    if missing:
        raise CheckError(f"{len(missing)} prompts missing (e.g. {missing[0]}): run `make setup` "
                         "(it installs asterisk-core-sounds-en-g722)")
    return prompts


def to_wav(src: str, dst: Path, rate: int = 16000, channels: int = 1) -> None:
    """G.722 -> 16-bit WAV with the host's ffmpeg (lossless: G.722 decodes to 16-bit samples)."""
    if not dst.is_file():
        run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", src,
             "-ar", str(rate), "-ac", str(channels), "-c:a", "pcm_s16le", str(dst)])


def prepare_audio() -> list[dict]:
    """Evenly spaced held-out prompts as WAV inside the root filesystem (the host reads the same files)."""
    prompts = held_out_prompts()
    chosen = [prompts[i * len(prompts) // NUM_PROMPTS] for i in range(NUM_PROMPTS)]
    jobs = [(p, 16000, 1) for p in chosen] + [(p, r, c) for p, (r, c) in zip(chosen, EXTRA_FORMATS)]
    audio = ROOTFS / WORK.lstrip("/") / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    files = []
    for p, rate, channels in jobs:
        name = f"{p['id'].replace('/', '_')}-{rate // 1000}k{'-stereo' if channels == 2 else ''}.wav"
        to_wav(p["audio"], audio / name, rate, channels)
        files.append({"file": name, "source": p["audio"], "reference": p["text"], "sample_rate": rate,
                      "channels": channels})
    return files


def _transcripts(stdout: str, side: str) -> dict:
    out = json.loads(stdout)
    if out["errors"]:
        raise CheckError(f"{side}: files failed: {out['errors']}")
    return {"chunk_ms": out["summary"]["chunk_ms"],
            "files": {Path(f["file"]).name: {"text": f["text"], "tokens": f["tokens"]} for f in out["files"]}}


def transcribe_both(chroot: Chroot, files: list[dict], mode: str, precision: str) -> dict:
    opts = ["--mode", mode, "--precision", precision, "--json"]
    host_dir = ROOTFS / WORK.lstrip("/") / "audio"
    x86 = run([sys.executable, "-m", "dualasr.cli", "transcribe", *(str(host_dir / f["file"]) for f in files), *opts],
              env={**os.environ, "OMP_NUM_THREADS": "1"})
    arm = chroot.run([f"{VENV}/bin/dualasr", "transcribe", *(f"{WORK}/audio/{f['file']}" for f in files), *opts])
    a, b = _transcripts(x86.stdout, "x86_64"), _transcripts(arm.stdout, "aarch64")
    rows = []
    for f in files:
        h, g = a["files"][f["file"]], b["files"][f["file"]]
        rows.append({"file": f["file"], "x86_64": h["text"], "aarch64": g["text"], "same_text": h["text"] == g["text"],
                     "same_tokens": h["tokens"] == g["tokens"],
                     "tokens": {"x86_64": h["tokens"], "aarch64": g["tokens"]}})
    return {"mode": mode, "precision": precision, "chunk_ms": a["chunk_ms"], "files": rows,
            "all_same": all(r["same_tokens"] and r["same_text"] for r in rows)}


def _token_edits(rows_a: list[dict], side_a: str, rows_b: list[dict], side_b: str) -> int:
    from dualasr.metrics import word_errors  # edit distance; any hashable tokens do

    return sum(word_errors([str(t) for t in x["tokens"][side_a]], [str(t) for t in y["tokens"][side_b]])
               for x, y in zip(rows_a, rows_b))


CRITERIA = {
    "fp32": "every token sequence equal on both machines",
    "int8": "int8 is discontinuous: the machines' fp32 kernels differ in the last bits (about 1e-6 relative, "
            "encoder_outputs), which can move a dynamically quantized activation across a step, and the change "
            "grows from there; so equal tokens are not promised, and the machines' int8 transcripts may differ by "
            "no more token edits than int8 differs from fp32 on either machine",
}


def judge(runs: list[dict]) -> None:
    """Sets each run's "passed" (and int8 runs' "token_edits") by CRITERIA."""
    fp32 = {r["mode"]: r for r in runs if r["precision"] == "fp32"}
    for r in runs:
        if r["precision"] == "fp32":
            r["passed"] = r["all_same"]
            continue
        f = fp32[r["mode"]]["files"]
        edits = {"x86_64_vs_aarch64": _token_edits(r["files"], "x86_64", r["files"], "aarch64"),
                 "int8_vs_fp32_on_x86_64": _token_edits(r["files"], "x86_64", f, "x86_64"),
                 "int8_vs_fp32_on_aarch64": _token_edits(r["files"], "aarch64", f, "aarch64")}
        r["token_edits"] = edits
        own_noise = max(edits["int8_vs_fp32_on_x86_64"], edits["int8_vs_fp32_on_aarch64"])
        r["passed"] = edits["x86_64_vs_aarch64"] <= own_noise


# Both machines' encoder_full outputs, fp32 and int8, for one file: how far int8 is from fp32 on
# each machine, and how far the machines are from each other. argv: audio, output prefix.
ENCODER_PROBE = """
import sys, numpy as np
from dualasr.audio import load_audio
from dualasr.runtime.backends import create_backend
from dualasr.runtime.cli import default_export_dir
from dualasr.runtime.features import compute_features
from dualasr.runtime.recognizer import load_export_manifest
export = default_export_dir()
manifest = load_export_manifest(export)
graph = manifest["graphs"]["encoder_full"]
features = compute_features(load_audio(sys.argv[1], 16000), manifest["features"])[None]
for precision in ("fp32", "int8"):
    backend = create_backend("onnxruntime", export, manifest, precision, threads=1, graphs=["encoder_full"])
    out = backend.run("encoder_full", {graph["inputs"][0]["name"]: features})[graph["outputs"][0]["name"]]
    np.save(f"{sys.argv[2]}-{precision}.npy", out)
"""


def compare_encoders(chroot: Chroot, name: str) -> dict:
    import numpy as np

    work = ROOTFS / WORK.lstrip("/")
    (work / "encoder").mkdir(exist_ok=True)
    run([sys.executable, "-c", ENCODER_PROBE, str(work / "audio" / name), str(work / "encoder" / "x86_64")],
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    chroot.run([f"{VENV}/bin/python", "-c", ENCODER_PROBE, f"{WORK}/audio/{name}", f"{WORK}/encoder/aarch64"])
    out = {(side, p): np.load(work / "encoder" / f"{side}-{p}.npy")
           for side in ("x86_64", "aarch64") for p in ("fp32", "int8")}

    def rel(a, b) -> float:
        return float(np.linalg.norm(out[a] - out[b]) / np.linalg.norm(out[b]))

    return {"file": name, "graph": "encoder_full", "relative_difference": {
        "fp32_x86_64_vs_aarch64": rel(("aarch64", "fp32"), ("x86_64", "fp32")),
        "int8_x86_64_vs_aarch64": rel(("aarch64", "int8"), ("x86_64", "int8")),
        "int8_vs_fp32_on_x86_64": rel(("x86_64", "int8"), ("x86_64", "fp32")),
        "int8_vs_fp32_on_aarch64": rel(("aarch64", "int8"), ("aarch64", "fp32"))}}


def check_torch_commands(chroot: Chroot) -> dict:
    """A command that needs torch says which extra to install, in one line, exit status 2."""
    proc = chroot.run([f"{VENV}/bin/dualasr", "export", "--out", f"{WORK}/never-written"], check=False)
    lines = proc.stderr.strip().splitlines()
    ok = proc.returncode == 2 and len(lines) == 1 and "dualasr[export]" in lines[0]
    return {"command": "dualasr export --out ...", "exit_status": proc.returncode, "stderr": proc.stderr.strip(),
            "ok": ok}


def emulator() -> str:
    return run(["qemu-aarch64-static", "--version"]).stdout.splitlines()[0]


def arm_platform(chroot: Chroot) -> dict:
    code = "import json, platform; print(json.dumps({'machine': platform.machine(), 'platform': platform.platform(), " \
           "'python': platform.python_version()}))"
    return json.loads(chroot.run([f"{VENV}/bin/python", "-c", code]).stdout)


def write_json(path: Path, obj: dict) -> None:
    from dualasr.fileio import atomic_write  # the checkout's own: this script runs with its Python

    atomic_write(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def record_baseline(chroot: Chroot) -> None:
    """scripts/arm_bench.sh on aarch64 (all held-out prompts as WAV) -> BASELINE."""
    work = ROOTFS / WORK.lstrip("/")
    (work / "bench-audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for p in held_out_prompts():
        name = p["id"].replace("/", "_") + ".wav"
        to_wav(p["audio"], work / "bench-audio" / name)
        lines.append(json.dumps({"id": p["id"], "audio": f"{WORK}/bench-audio/{name}", "text": p["text"]}))
    (work / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy2(REPO / "scripts" / "arm_bench.sh", work / "arm_bench.sh")
    code = "from dualasr.runtime.cli import default_export_dir; print(default_export_dir())"
    export = chroot.run([f"{VENV}/bin/python", "-c", code])
    print("test-arm: running the ARM bench on aarch64 under qemu (RTFs are emulated)", flush=True)
    # One timed pass and no matmul microbenchmark: emulated timings are not worth repeating.
    chroot.run(["/usr/bin/bash", f"{WORK}/arm_bench.sh", export.stdout.strip(), f"{WORK}/test.jsonl",
                f"{WORK}/baseline.json", "--repeat", "1", "--no-compute"], env=[f"PATH={VENV}/bin:/usr/bin:/bin"])
    results = json.loads((work / "baseline.json").read_text(encoding="utf-8"))
    results["recorded_under"] = (
        f"{emulator()} (user-mode emulation) on "
        f"{platform.machine()}, Debian {SUITE} arm64, by `python scripts/test_arm.py --record-baseline`: WER and "
        "sizes are aarch64's, RTFs are emulated; record a baseline on the runner to gate RTF"
    )
    write_json(BASELINE, results)
    print(f"test-arm: baseline -> {BASELINE.relative_to(REPO)}")


def check(chroot: Chroot, packages: list[dict]) -> dict:
    """Transcripts on both sides -> the arm64_qemu.json record."""
    forbidden = sorted({p["name"].lower() for p in packages} & set(FORBIDDEN))
    files = prepare_audio()
    runs = []
    for mode, precision in CONFIGS:
        print(f"test-arm: transcribing {len(files)} files, {mode} {precision}, on x86_64 and aarch64", flush=True)
        runs.append(transcribe_both(chroot, files, mode, precision))
    judge(runs)
    # The first file and every file whose int8 transcripts differ between the machines.
    probe = dict.fromkeys([files[0]["file"]] + [f["file"] for r in runs for f in r["files"] if not f["same_tokens"]])
    encoders = [compare_encoders(chroot, name) for name in probe]
    torch_commands = check_torch_commands(chroot)
    return {
        "command": "make test-arm (scripts/test_arm.py)",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "what": "dualasr transcribe --json, built-in export, x86_64 (this checkout) vs aarch64 (its wheel in a "
                f"Debian {SUITE} arm64 root under qemu-user); equal = same token ids and text",
        "criteria": CRITERIA,
        "x86_64": {"platform": platform.platform(), "python": platform.python_version()},
        "aarch64": {**arm_platform(chroot), "emulator": emulator(),
                    "packages": {p["name"]: p["version"] for p in packages}, "forbidden_packages": forbidden},
        "audio": files,
        "runs": runs,
        "encoder_outputs": encoders,
        "torch_command_error": torch_commands,
        "all_same": all(r["all_same"] for r in runs),
        "passed": all(r["passed"] for r in runs) and not forbidden and torch_commands["ok"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--record-baseline", action="store_true",
                   help=f"write {BASELINE.relative_to(REPO)} (the ARM CI gate's baseline) instead of checking")
    args = p.parse_args(argv)
    t0 = time.time()
    ensure_host()
    ensure_rootfs()
    with Chroot() as chroot:
        packages = install_wheel(chroot)
        if args.record_baseline:
            record_baseline(chroot)
            return 0
        result = check(chroot, packages)
    write_json(RESULTS, result)
    for r in result["runs"]:
        same = sum(f["same_tokens"] and f["same_text"] for f in r["files"])
        extra = f", token edits {r['token_edits']}" if "token_edits" in r else ""
        print(f"test-arm: {r['mode']} {r['precision']}: {same}/{len(r['files'])} transcripts equal on aarch64 and "
              f"x86_64{extra}: {'ok' if r['passed'] else 'FAILED'}")
    forbidden = result["aarch64"]["forbidden_packages"]
    print(f"test-arm: forbidden packages on aarch64: {forbidden or 'none'}; torch-command error "
          f"{'ok' if result['torch_command_error']['ok'] else 'WRONG'} ({time.time() - t0:.0f} s) -> "
          f"{RESULTS.relative_to(REPO)}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckError as e:
        print(f"test-arm: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("test-arm: interrupted", file=sys.stderr)
        sys.exit(130)
