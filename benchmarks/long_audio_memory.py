"""Peak memory of `dualasr transcribe` on one long file, streaming and full mode, for this checkout
and for an earlier commit: does memory grow with the file's length? (Issue 13, items 3 and 4.)

    python benchmarks/long_audio_memory.py --minutes 60 --before da8b536 \
        --json benchmarks/results/long_audio_memory.json

Audio: the held-out real Asterisk prompts (real_test split) with 0.3 s of low noise after each,
repeated to --minutes, resampled to 96 kHz stereo and written as 24-bit FLAC block by block (the
case the issue reported: 6.9 GB before decoding started). Each measurement is one
`dualasr transcribe FILE --mode M --json` with the built-in model's export in a fresh process,
OMP_NUM_THREADS=1 and --threads 1; its peak RSS is VmHWM at exit. --before runs the same
command on a `git archive` copy of that commit in a temp folder (found first on PYTHONPATH).
--cap-gb limits each run's address space (the machine is shared: the old code's memory grows
without bound). A run that fails (e.g. the old full mode's 131 GB allocation, or the cap) is
recorded with its last error line.
Not a timing benchmark: wall seconds are recorded for information only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEASURE = (
    "import sys\n"
    "import dualasr\n"
    "from dualasr.cli import main\n"
    "rc = main(sys.argv[3:])\n"
    "# VmHWM, not ru_maxrss: that survives exec and would include this script's parent at fork time\n"
    "hwm = next(int(ln.split()[1]) for ln in open('/proc/self/status') if ln.startswith('VmHWM:'))\n"
    "open(sys.argv[1], 'w').write(str(hwm / 1024))\n"
    "open(sys.argv[2], 'w').write(dualasr.__file__)\n"
    "sys.exit(rc)\n"
)


def write_audio(path: Path, minutes: float, rate: int = 96000) -> dict:
    """Real prompts + gaps, repeated to `minutes`, as a `rate` Hz stereo FLAC; -> its description."""
    import soundfile as sf
    from scipy.signal import resample_poly

    from dualasr.audio import load_audio
    from dualasr.demo import real_test_set

    utts = real_test_set()
    rng = np.random.default_rng(0)
    unit = np.concatenate([x for u in utts for x in (load_audio(u.audio), 0.002 * rng.standard_normal(4800))])
    g = int(np.gcd(rate, 16000))
    unit = resample_poly(unit, rate // g, 16000 // g).astype(np.float32)
    total = int(minutes * 60 * rate)
    with sf.SoundFile(str(path), "w", rate, 2, subtype="PCM_24", format="FLAC") as f:
        done = 0
        while done < total:
            block = np.clip(unit[: total - done], -1, 1)
            f.write(np.stack([block, 0.7 * block], axis=1))
            done += block.size
    return {"seconds": total / rate, "sample_rate": rate, "channels": 2, "format": "FLAC PCM_24",
            "bytes": path.stat().st_size, "source": f"{len(utts)} real_test prompts + 0.3 s noise, repeated"}


def checkout(commit: str, into: Path) -> Path:
    """`git archive COMMIT` into `into`, with dualasr.export / dualasr.runtime where imports expect them."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "dualasr" / "export").symlink_to(into / "export", target_is_directory=True)
    (into / "dualasr" / "runtime").symlink_to(into / "runtime_py", target_is_directory=True)
    return into


def measure(code: Path | None, audio: Path, mode: str, work: Path, cap_gb: float | None) -> dict:
    peak, where = work / f"peak-{time.monotonic_ns()}", work / f"where-{time.monotonic_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    t0 = time.perf_counter()
    def cap() -> None:
        if cap_gb:
            limit = int(cap_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    r = subprocess.run([sys.executable, "-c", MEASURE, str(peak), str(where), "transcribe", str(audio), "--mode", mode,
                        "--threads", "1", "--json"], capture_output=True, text=True, env=env, cwd=work, preexec_fn=cap)
    out: dict = {"mode": mode, "exit_status": r.returncode, "wall_s": round(time.perf_counter() - t0, 1),
                 "peak_rss_mb": round(float(peak.read_text()), 1) if peak.exists() else None,
                 "dualasr_from": where.read_text() if where.exists() else None}
    if r.returncode == 0:
        f = json.loads(r.stdout)["files"][0]
        out.update(audio_s=round(f["audio_s"], 2), words=len(f["text"].split()))
    else:
        lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
        out["error"] = lines[-1][:300] if lines else f"exit status {r.returncode}"
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--before", help="an earlier commit to measure too (e.g. da8b536)")
    p.add_argument("--modes", default="streaming,full")
    p.add_argument("--cap-gb", type=float, help="address-space limit per run (GiB)")
    p.add_argument("--json", required=True, help="results file")
    args = p.parse_args()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="dualasr-longmem-") as tmp:
        work = Path(tmp)
        audio = work / "long.flac"
        results = {"command": " ".join(["python", "benchmarks/long_audio_memory.py", *sys.argv[1:]]),
                   "audio": write_audio(audio, args.minutes), "cap_gb": args.cap_gb, "runs": []}
        versions = [("after", head + " + working tree", None)]
        if args.before:
            versions.insert(0, ("before", args.before, checkout(args.before, work / "before")))
        for label, version, code in versions:
            for mode in args.modes.split(","):
                run = {"code": label, "version": version, **measure(code, audio, mode, work, args.cap_gb)}
                print(json.dumps(run), flush=True)
                results["runs"].append(run)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
