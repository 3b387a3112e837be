"""The benchmark harness: timing, memory, report writer, and a --quick smoke run of both suites."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from lpt_core.bench.memory import peak_anon_memory, peak_cpu_memory
from lpt_core.bench.report import BenchReport, BenchRow, update_markdown
from lpt_core.bench.timing import ratio, time_interleaved


def test_time_interleaved_warms_up_and_rotates() -> None:
    calls: list[str] = []
    cands = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    stats = time_interleaved(cands, repeats=3, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up, in order
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotated rounds
    assert {s.repeats for s in stats.values()} == {3}


def test_time_interleaved_ratio_tracks_work() -> None:
    stats = time_interleaved({"slow": lambda: time.sleep(0.03), "fast": lambda: time.sleep(0.005)},
                             repeats=3, warmup=0)
    assert stats["slow"].median_s >= 0.03
    assert ratio(stats, "slow", "fast") > 1.5
    with pytest.raises(KeyError, match="nope"):
        ratio(stats, "nope", "fast")
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"x": lambda: None}, repeats=0)


def test_peak_cpu_memory_sees_a_large_allocation() -> None:
    m = peak_cpu_memory(lambda: np.ones(40_000_000).sum())  # 305 MiB of float64
    assert m.delta_bytes > 250 * 2**20, m


def test_peak_anon_memory_sees_a_large_allocation_and_not_a_mapped_file(tmp_path) -> None:
    m = peak_anon_memory(lambda: np.ones(40_000_000).sum())  # 305 MiB of float64
    assert m.delta_bytes > 250 * 2**20, m
    mapped = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.uint8, shape=(300 * 2**20,))
    m = peak_anon_memory(lambda: mapped.fill(7))  # 300 MiB of file pages, none anonymous
    assert m.delta_bytes < 50 * 2**20, m


def test_prepare_memory_rows_quick() -> None:
    from lpt_core.bench.prepmem import prepare_memory_rows

    rows = prepare_memory_rows(True, "cmd")
    assert [r.name.split(", ")[-1] for r in rows] == ["in memory", "streamed"] * 2
    assert all(r.value >= 0 and r.unit == "MiB" and "RssAnon" in r.detail for r in rows)


def test_update_markdown_replaces_only_its_suite(tmp_path) -> None:
    path = tmp_path / "B.md"
    machine = {"cpu": "X", "cores": 2, "torch": "t", "date": "2026-01-01 00:00 UTC"}
    gpu = BenchReport("gpu", machine, [BenchRow("s", "gpu row", 1.0, "x", command="cmd g")])
    update_markdown(path, gpu, preamble="# Benchmarks\n")
    for value in (2.0, 3.0):
        update_markdown(path, BenchReport("cpu", machine, [BenchRow("s", "cpu row", value, "x", command="cmd c")]))
    text = path.read_text()
    assert text.startswith("# Benchmarks") and text.count("<!-- bench:cpu:start -->") == 1
    assert "gpu row" in text and "| cpu row | 3 |" in text and "| cpu row | 2 |" not in text
    assert "`cmd c`" in text and "2026-01-01 00:00 UTC" in text


def test_cpu_suite_quick_smoke(tmp_path) -> None:
    from lpt_core.cli import main

    out, js = tmp_path / "BENCHMARKS.md", tmp_path / "cpu.json"
    rc = main(["bench", "cpu", "--quick", "--only", "flops,walltime,corruptions", "--out", str(out), "--json", str(js)])
    assert rc == 0
    rows = json.loads(js.read_text())["rows"]
    assert [r for r in rows if r["error"]] == []
    names = {r["name"] for r in rows}
    assert {"lpt_reuse / plain", "lpt_reuse / lpt_naive", "lpt_reuse / full_ft", "zoom_blur"} <= names
    flops = {r["name"]: r["value"] for r in rows if r["section"].startswith("FLOPs")}
    assert flops["lpt_naive"] > flops["lpt_reuse"] > flops["phase1"] > flops["plain"] > 0
    assert all(r["command"].startswith("lpt bench cpu --only ") for r in rows)
    text = out.read_text()
    assert "lpt bench cpu --only walltime --quick" in text and "<!-- bench:cpu:corruptions:start -->" in text
    assert main(["bench", "cpu", "--quick", "--only", "nosuch"]) == 2  # unknown section: clear error


def test_gpu_script_quick_on_cpu(tmp_path) -> None:
    from lpt_core.bench.gpu import run_gpu_suite

    report = run_gpu_suite(quick=True, only=["matmul", "eval", "train"], device="cpu", out_dir=tmp_path)
    assert [r for r in report.rows if r.error] == []
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert any(r["name"] == "time lpt_reuse / plain" for r in data["rows"])
    assert "<!-- bench:gpu:eval:start -->" in (tmp_path / "gpu_bench.md").read_text()
    from lpt_core.cli import main

    md = tmp_path / "BENCHMARKS.md"
    assert main(["bench", "gpu", "--from-json", str(tmp_path / "gpu_bench.json"), "--out", str(md)]) == 0
    assert "<!-- bench:gpu:train:start -->" in md.read_text()
    assert main(["bench", "cpu", "--from-json", str(tmp_path / "gpu_bench.json")]) == 2  # wrong suite


def test_nightly_cost_split_from_per_pair_times() -> None:
    from lpt_core.bench.nightly import JobTiming, cost_rows

    runs = [JobTiming(1, 1, 1, 4.0, 5.0, (1.5,)),  # a single pair: only its first-use time counts
            JobTiming(1, 2, 2, 4.6, 5.6, (1.4, 0.2)),
            JobTiming(2, 2, 3, 5.0, 6.0, (1.6, 0.3, 0.25)),
            JobTiming(2, 2, 0, 0.01, 1.0)]
    rows = {r.name: r.value for r in cost_rows(runs, "s", "cmd")}
    assert rows["per pair (median, after each job's first)"] == pytest.approx(0.25)
    assert rows["first pair of a job (median)"] == pytest.approx(1.5)
    assert rows["fixed cost of a job that evaluates (median)"] == pytest.approx(4.1)  # of 3.75, 4.1, 4.25
    assert cost_rows(runs[:1], "s", "cmd") == []  # no later pair: nothing to split


def test_night_load_rows_count_lost_and_doubled_pairs_and_fit_the_line() -> None:
    from lpt_core.bench.nightload import LoadJob, LoadNight, fit_line, night_rows

    a, b, worst = fit_line([250, 500, 1250], [3.0 + 0.02 * n for n in (250, 500, 1250)])
    assert (a, b, worst) == (pytest.approx(3.0), pytest.approx(0.02), pytest.approx(0.0, abs=1e-12))
    jobs = tuple(LoadJob(n, 0, 3.0 + 0.02 * n, 0.02 * n, 0.005 * n) for n in (250, 500, 1250))
    good = LoadNight(jobs, 0, {"eval_runs": 2000, "metrics": 34000}, 2000, 2000)
    rows = {r.name: r for r in night_rows(good, "t", "cmd")}
    assert "lost 0, doubled 0" in rows["pairs recorded (eval runs in the store)"].detail
    assert rows["job seconds = fixed + pairs x per-pair (fit)"].value == pytest.approx(20.0)  # ms/pair
    doubled = LoadNight(jobs + (LoadJob(10, 0, 3.2, 0.2, 0.05),), 0, {"eval_runs": 2000, "metrics": 34000}, 2000, 2000)
    assert "doubled 10" in night_rows(doubled, "t", "cmd")[0].detail
    lost = LoadNight(jobs, 5, {"eval_runs": 1995, "metrics": 33915}, 1995, 2000)
    assert "lost 5" in night_rows(lost, "t", "cmd")[0].detail
