"""The regression gate (`--compare baseline.json`): a new run against a baseline, cell by cell."""

from __future__ import annotations

__all__ = ["compare_results", "parse_regression"]


def parse_regression(value: str) -> float:
    """'10%' -> 0.10; '0.1' -> 0.10; '10' -> 0.10 (a bare number above 1 is a percentage)."""
    v = str(value).strip()
    try:
        x = float(v[:-1]) / 100.0 if v.endswith("%") else float(v)
    except ValueError:
        raise ValueError(f"--max-regression must look like 10% or 0.1, got {value!r}") from None
    if not v.endswith("%") and x > 1.0:
        x /= 100.0
    if x < 0:
        raise ValueError(f"--max-regression must be >= 0, got {value!r}")
    return x


def compare_results(new: dict, base: dict, max_rel: float = 0.10, max_wer_points: float = 1.0,
                    allow_missing: bool = False, rtf_floor: float = 0.0) -> tuple[bool, list[str]]:
    """Gate `new` against `base`, cell by cell (matched by id, both "ok").

    Fails when, for a cell: RTF or size on disk grew by more than max_rel (relative), or WER rose
    by more than max_wer_points absolute percentage points; or a cell that ran in the baseline did
    not run now (unless allow_missing). rtf_floor: RTFs below it in both runs are too small to
    time reliably and are not gated. Returns (passed, readable report lines).
    """
    # Another search gives other WER and RTF by design: nothing to gate (older results: greedy).
    searches = [r.get("settings", {}).get("decoding") or {"decoding": "greedy"} for r in (base, new)]
    if searches[0] != searches[1]:
        return False, [f"regression gate: not compared: the baseline searched with {searches[0]}, this run with "
                       f"{searches[1]}; compare runs made with the same --decoding/--beam/--lm options"]
    # Another model gives other WER, RTF and size by design: nothing to gate either.
    models = [r.get("export", {}).get("source_checkpoint_sha256") for r in (base, new)]
    if None not in models and models[0] != models[1]:
        return False, [f"regression gate: not compared: the baseline benched another model (checkpoint sha256 "
                       f"{models[0][:16]}…, this run {models[1][:16]}…); record a new baseline from this export"]
    base_ok = {c["id"]: c for c in base["cells"] if c.get("status") == "ok"}
    new_all = {c["id"]: c for c in new["cells"]}
    problems: list[str] = []
    checked = 0
    for cid, b in base_ok.items():
        n = new_all.get(cid)
        if n is None or n.get("status") != "ok":
            if not allow_missing:
                why = "not in this run" if n is None else f"{n.get('status')}: {n.get('reason')}"
                problems.append(f"  {cid}: ran in the baseline but not now ({why})")
            continue
        checked += 1
        bm, nm = b["metrics"], n["metrics"]
        for key, label, fmt in (("rtf", "RTF", "{:.4f}"), ("size_bytes", "size", "{:,.0f} B")):
            bv, nv = bm.get(key), nm.get(key)
            if not isinstance(bv, (int, float)) or not isinstance(nv, (int, float)) or bv <= 0:
                continue
            if key == "rtf" and max(bv, nv) < rtf_floor:
                continue
            if nv > bv * (1.0 + max_rel):
                problems.append(f"  {cid}: {label} {fmt.format(bv)} -> {fmt.format(nv)} "
                                f"({(nv / bv - 1) * 100:+.1f}%, limit +{max_rel * 100:.1f}%)")
        bw, nw = bm.get("wer_pct"), nm.get("wer_pct")
        if isinstance(bw, (int, float)) and isinstance(nw, (int, float)) and nw - bw > max_wer_points:
            problems.append(f"  {cid}: WER {bw:.2f}% -> {nw:.2f}% ({nw - bw:+.2f} points, limit +{max_wer_points:.2f})")
    head = (f"regression gate: {checked} cell(s) compared against the baseline "
            f"(RTF and size: at most +{max_rel * 100:.1f}% relative; WER: at most +{max_wer_points:.2f} points absolute)")
    base_machine, new_machine = base.get("machine", {}), new.get("machine", {})
    if base_machine.get("arch") != new_machine.get("arch"):
        head += (f"\n  note: baseline ran on {base_machine.get('arch')}, this run on "
                 f"{new_machine.get('arch')}: timings are not comparable across machines")
    elif None not in (base_machine.get("int8_cpu_features"), new_machine.get("int8_cpu_features")) and \
            base_machine["int8_cpu_features"] != new_machine["int8_cpu_features"]:
        head += (f"\n  note: the baseline's CPU has int8 features {base_machine['int8_cpu_features']}, this one "
                 f"{new_machine['int8_cpu_features']}: int8 timings are not comparable across the two")
    if checked == 0 and not problems:
        problems.append("  no cell ran in both the baseline and this run: nothing to compare")
    if problems:
        return False, [head, f"FAILED: {len(problems)} regression(s):", *problems]
    return True, [head, "passed: no regression beyond the limits"]
