"""``make bench``: every figure of benchmarks/RESULTS.md, measured side by side in one run on this machine.

Ratios, not absolute times, are the result (shared machines are noisy): served vs the
research script, time outside the networks, dynamic batching on vs off, OpenVINO vs ONNX
Runtime and both against the machine's own matrix-multiply peak, the full presets end to end
per patient. Tiny presets (the demo weights) are served in the sweeps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks import baseline_script, hotspots, machine, perf, pyspy, registration, soak
from collat_client import Clinical, CollatClient

ROOT = Path(__file__).resolve().parents[1]
# stroke_triage's two branches run side by side; each is (preprocess, network, postprocess).
BRANCHES = {"collateral": ("preprocess_perfusion", "mrod_net", "postprocess_collateral"),
            "hypoperfusion": ("preprocess_diffusion", "hypoperfusion_unet", "postprocess_hypoperfusion")}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def build_repository(out: Path, *extra: str) -> Path:
    from collat_export.weights import demo_checkpoint

    subprocess.run([sys.executable, "-m", "collat_export.cli", "repository", "--target", "python-onnx", "--out",
                    str(out), "--mrod-checkpoint", str(demo_checkpoint("mrod")), "--hypo-checkpoint",
                    str(demo_checkpoint("hypo")), *extra], check=True, capture_output=True)
    return out


def model_stats(server) -> dict[str, dict[str, float]]:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/stats", timeout=30) as r:
        data = json.loads(r.read())["model_stats"]
    out = {}
    for m in data:
        s = m["inference_stats"]
        out[m["name"]] = {"count": s["success"]["count"], "total_ns": s["success"]["ns"], "queue_ns": s["queue"]["ns"],
                          "compute_ns": s["compute_input"]["ns"] + s["compute_infer"]["ns"] + s["compute_output"]["ns"]}
    return out


def _infer_case(client, case_dir: Path) -> None:
    client.infer(perfusion=case_dir / "perfusion.nii.gz", dwi=case_dir / "dwi.nii.gz", adc=case_dir / "adc.nii.gz",
                 clinical=Clinical(nihss=14, age=70, side="left"))


def served_sweep(server, case_dirs: list[Path], levels: list[int]) -> tuple[list[dict], dict]:
    """The SDK's default transport (HTTP, binary tensors), files read by the SDK inside the timed call."""
    rows, breakdown = [], {}
    with CollatClient(server.http_url, timeout=900) as client:
        def one(i: int) -> float:
            t0 = time.perf_counter()
            _infer_case(client, case_dirs[i % len(case_dirs)])
            return time.perf_counter() - t0

        one(0)  # warm-up
        for c in levels:
            n = max(4, 2 * c)
            before = model_stats(server)
            start = time.perf_counter()
            with ThreadPoolExecutor(c) as pool:
                latencies = list(pool.map(one, range(n)))
            wall = time.perf_counter() - start
            after = model_stats(server)
            rows.append({"concurrency": c, "requests": n, "patients_per_min": n / wall * 60.0,
                         "p50_s": statistics.median(latencies), "p95_s": float(np.percentile(latencies, 95))})
            log(f"served c={c}: {rows[-1]['patients_per_min']:.2f} patients/min, p50 {rows[-1]['p50_s']:.2f} s")
            if c == 1:
                delta = {k: {f: after[k][f] - before[k][f] for f in after[k]} for k in after}
                breakdown = time_breakdown(delta, statistics.mean(latencies), n)
                log("time per request at c=1: " + ", ".join(
                    f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in breakdown.items()))
    return rows, breakdown


def time_breakdown(delta: dict, e2e_s: float, requests: int) -> dict[str, float]:
    """Per-request ms of each step (queue + compute, from Triton), and the share of the end-to-end latency spent
    outside the networks along the critical path.

    The two branches overlap, so summing every step would count the shorter branch's time although the
    patient never waits for it. The latency is: client (read, upload, download) + the longer branch + the
    merge. Outside the networks = end-to-end - the longer branch's network time. The share of all work
    (every step summed, parallel or not) is kept as a second figure.
    """
    step = {m: (delta[m]["queue_ns"] + delta[m]["compute_ns"]) / requests / 1e6
            for models in BRANCHES.values() for m in models}
    step["merge_metrics"] = (delta["merge_metrics"]["queue_ns"] + delta["merge_metrics"]["compute_ns"]) \
        / requests / 1e6
    server_ms = delta["stroke_triage"]["total_ns"] / requests / 1e6
    branch_ms = {b: sum(step[m] for m in models) for b, models in BRANCHES.items()}
    critical = max(branch_ms, key=branch_ms.get)
    network_ms = step[BRANCHES[critical][1]]
    e2e_ms = e2e_s * 1000.0
    client_ms = max(e2e_ms - server_ms, 0.0)
    work = sum(step.values()) + client_ms
    networks_all = sum(step[models[1]] for models in BRANCHES.values())
    return {**{f"{m}_ms": v for m, v in step.items()}, "critical_branch": critical,
            **{f"{b}_branch_ms": v for b, v in branch_ms.items()},
            "client_and_transport_ms": client_ms, "server_ms": server_ms, "e2e_ms": e2e_ms,
            "network_on_critical_path_ms": network_ms,
            "outside_networks_share": 1.0 - network_ms / e2e_ms,
            "outside_networks_share_of_all_work": 1.0 - networks_all / work}


def full_end_to_end(work: Path, case_dirs: list[Path], logs: Path) -> dict:
    """The `full` presets of both networks (random weights: no full-size weights are trained; the time does not
    depend on them) served on this machine: seconds from the client's call to the maps on disk, one patient at a
    time (concurrency 1), median of the cases after a warm-up."""
    from collat_ensemble.server.launcher import TritonServer

    repository = work / "repo_full"
    subprocess.run([sys.executable, "-m", "collat_export.cli", "repository", "--target", "python-onnx", "--preset",
                    "full", "--out", str(repository)], check=True, capture_output=True)
    seconds = []
    with TritonServer(repository, log_file=logs / "tritonserver_full.log") as server, \
            CollatClient(server.http_url, timeout=900) as client:
        for i, case_dir in enumerate([case_dirs[0], *case_dirs]):
            start = time.perf_counter()
            result = client.infer(perfusion=case_dir / "perfusion.nii.gz", dwi=case_dir / "dwi.nii.gz",
                                  adc=case_dir / "adc.nii.gz", clinical=Clinical(nihss=14, age=70, side="left"))
            result.save(work / f"full_out{i}", overwrite=True)
            if i:  # the first is the warm-up
                seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "median_s": statistics.median(seconds)}


def perf_inputs(folder: Path, case) -> dict[str, tuple[Path, dict]]:
    from collat_ensemble.preprocess import prepare_diffusion, prepare_perfusion
    from collat_export.presets import get_preset
    from collat_export.weights import DEMO_PRESETS

    g = get_preset("mrod", DEMO_PRESETS["mrod"]).geometry
    prep = prepare_perfusion(case.perfusion.astype(np.float32), case.perfusion_affine, case.frame_seconds,
                             frames=g.channels, frame_interval=g.frame_seconds, slices=g.slices, height=g.height,
                             width=g.width)
    diff = prepare_diffusion(case.dwi, case.adc, case.diffusion_affine, nihss=14, side="left")
    raw = {"PERFUSION": case.perfusion.astype(np.float32), "PERFUSION_AFFINE": case.perfusion_affine,
           "FRAME_SECONDS": np.array([case.frame_seconds], np.float32), "DWI": case.dwi.astype(np.float32),
           "ADC": case.adc.astype(np.float32), "DWI_AFFINE": case.diffusion_affine,
           "ADC_AFFINE": case.diffusion_affine, "CLINICAL": perf.clinical_json(14, "left")}
    sets = {
        "mrod_net": {"MROD_INPUT": prep.network_input},
        "hypoperfusion_unet": {"IMAGE": diff.slabs[5], "NIHSS": diff.nihss[5]},
        "collateral_pipeline": {k: raw[k] for k in ("PERFUSION", "PERFUSION_AFFINE", "FRAME_SECONDS")},
        "hypoperfusion_pipeline": {k: raw[k] for k in ("DWI", "ADC", "DWI_AFFINE", "ADC_AFFINE", "CLINICAL")},
        "stroke_triage": raw,
    }
    return {m: (folder / m, perf.write_inputs(folder / m, t)) for m, t in sets.items()}


def perf_sweep(server, inputs, work: Path, plan: list[tuple[str, int, list[int], int]]) -> list[dict]:
    """(model, batch, concurrency levels, requests per measurement window): windows of a few seconds each, so the
    slow U-Net and ensemble rows (3.5 s per request) keep `make bench` under 15 minutes."""
    rows = []
    for model, batch, levels, requests in plan:
        folder, shapes = inputs[model]
        for c in levels:
            r = perf.run(model, server.grpc_url, folder, shapes, c, batch=batch, requests=requests,
                         csv_path=work / f"{model}_b{batch}_c{c}.csv")
            rows.append({"model": model, **r})
            log(f"perf_analyzer {model} b={batch} c={c}: {r['throughput']:.2f} infer/s, p50 {r['p50_ms']:.0f} ms")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--cases", type=int, default=4)
    args = parser.parse_args(argv)
    from collat_ensemble.phantom import generate_case, write_case
    from collat_ensemble.server.launcher import TritonServer
    from collat_export.bench import has_bf16, median_seconds, network_runners

    started = time.perf_counter()
    results: dict = {"machine": machine.describe()}
    log(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores")
    results["matmul"] = machine.matmul_peak_gflops(bf16=has_bf16())
    log(f"fp32 matmul peak {results['matmul']['peak']:.1f} GFLOP/s" +
        (f", bf16 {results['matmul']['bf16_peak']:.1f}" if "bf16_peak" in results["matmul"] else ""))
    results["runtimes"] = []
    faster = max(("numpy", "torch"), key=results["matmul"].get)
    for preset in ("tiny", "full"):
        for model in ("mrod", "hypo"):
            runners = network_runners(model, preset, threads=2)
            torch_s = median_seconds(runners.run_torch, 3)
            for runtime, run in (("onnxruntime", runners.run_ort), ("openvino", runners.run_openvino),
                                 ("openvino-bf16", runners.run_openvino_bf16)):
                if run is None:
                    continue
                efficiency = machine.interleaved_efficiency(
                    run, runners.flops, faster, dtype="bfloat16" if runtime.endswith("bf16") else "float32")
                r = {"model": model, "preset": preset, "runtime": runtime, "gflop": runners.flops / 1e9,
                     "torch_s": torch_s, **efficiency}
                results["runtimes"].append(r)
                log(f"{runtime} {model} {preset}: {r['seconds']:.3f} s, {r['gflops_rounds']:.1f} GFLOP/s against a "
                    f"peak of {r['peak_gflops_rounds']:.1f} in the same rounds = {r['efficiency']:.0%} "
                    f"({r['efficiency_min']:.0%}-{r['efficiency_max']:.0%})")

    results["registration"] = registration.measure()
    log(f"registration to MNI: median {results['registration']['median_s']:.2f} s per native scan, "
        f"error {results['registration']['mean_error_mm']:.2f} mm")

    with tempfile.TemporaryDirectory(prefix="collat-bench-") as tmp:
        work = Path(tmp)
        cases = [generate_case(201 + i, strength=1 + i % 4, side="left") for i in range(args.cases)]
        case_dirs = [work / f"case{i}" for i in range(args.cases)]
        for case, d in zip(cases, case_dirs, strict=True):
            write_case(case, d)
        results["hotspots"] = hotspots.measure(case_dirs[0] / "perfusion.nii.gz")
        for h in results["hotspots"]:
            log(f"hot spot {h['hot_spot']}: {h['before_s']:.3f} -> {h['after_s']:.3f} s")
        nets = baseline_script.load_networks()
        baseline_runs = [baseline_script.patients_per_minute(case_dirs, nets)]
        log(f"baseline script: {baseline_runs[0][0]:.2f} patients/min (before the served sweep)")

        repo_on = ROOT / "build" / "model_repository"
        if not (repo_on / "stroke_triage" / "config.pbtxt").is_file():
            build_repository(repo_on)
        repo_off = build_repository(work / "repo_off", "--no-dynamic-batching")
        inputs = perf_inputs(work / "inputs", cases[0])
        logs = ROOT / "build" / "bench"
        logs.mkdir(parents=True, exist_ok=True)
        with TritonServer(repo_on, log_file=logs / "tritonserver_batching_on.log") as server:
            results["served"], results["breakdown"] = served_sweep(server, case_dirs, [1, 2, 4, 8])
            # The baseline brackets the served sweep (the server idles meanwhile): the machine's speed drifts.
            baseline_runs.append(baseline_script.patients_per_minute(case_dirs, nets, warm_up=False))
            del nets
            results["baseline"] = {"patients_per_min": statistics.mean(ppm for ppm, _ in baseline_runs),
                                   "runs_patients_per_min": [ppm for ppm, _ in baseline_runs],
                                   "p50_s": statistics.median(t for _, lat in baseline_runs for t in lat)}
            log(f"baseline script: {baseline_runs[1][0]:.2f} patients/min (after), mean "
                f"{results['baseline']['patients_per_min']:.2f}")
            results["hotspots"].append(hotspots.upload(server.http_url, case_dirs[0] / "perfusion.nii.gz"))
            with CollatClient(server.http_url, timeout=900) as client:
                results["pyspy"] = pyspy.profile_steps(lambda: [_infer_case(client, d) for d in case_dirs[:3]], work)
            log(f"py-spy: {len(results['pyspy'])} steps profiled" if results["pyspy"] else "py-spy not installed")
            results["perf"] = perf_sweep(server, inputs, work, [
                ("mrod_net", 1, [1, 2, 4, 8], 8), ("hypoperfusion_unet", 12, [1, 4, 8], 2),
                ("hypoperfusion_unet", 1, [8], 24), ("collateral_pipeline", 1, [1, 4], 4),
                ("hypoperfusion_pipeline", 1, [1, 4], 2), ("stroke_triage", 1, [1, 4], 2)])
        with TritonServer(repo_off, log_file=logs / "tritonserver_batching_off.log") as server:
            results["perf_off"] = perf_sweep(server, inputs, work, [("hypoperfusion_unet", 12, [8], 2),
                                                                    ("hypoperfusion_unet", 1, [8], 24)])
        results["full_end_to_end"] = full_end_to_end(work, case_dirs[:3], logs)
        log(f"full presets end to end: median {results['full_end_to_end']['median_s']:.2f} s per patient")
        results["soak"] = soak.measure(repo_on, lambda client: _infer_case(client, case_dirs[0]),
                                       logs / "tritonserver_soak.log")
        log(f"soak: warm {results['soak']['warm_pss_mb']:.0f} MB, after {results['soak']['requests']} requests "
            f"{results['soak']['after_pss_mb']:.0f} MB ({results['soak']['growth']:+.1%})")
    results["precision"] = served_precisions()
    results["seconds"] = time.perf_counter() - started
    args.out.write_text(render(results))
    (args.out.with_suffix(".json")).write_text(json.dumps(results, indent=2, default=str))
    log(f"wrote {args.out} in {results['seconds'] / 60:.1f} min")


def served_precisions() -> dict[str, dict]:
    """Each served network's precision record from its card (accuracy and speed of FP32 / BF16 / INT8 on held-out
    phantoms, measured by ``collat-train precision``) and what the server chooses on this CPU."""
    from collat_ensemble.server.network_model import choose_precision, cpu_capabilities
    from collat_export.onnx_export import accepted_precisions, shipped_int8
    from collat_export.weights import DEMO_PRESETS, demo_checkpoint

    records = {}
    for model in ("mrod", "hypo"):
        checkpoint = demo_checkpoint(model)
        record = json.loads((checkpoint.parent / "model_card.json").read_text()).get("precision") or {}
        chosen, why = choose_precision(None, accepted_precisions(str(checkpoint)), cpu_capabilities(),
                                       int8_model=shipped_int8(checkpoint) is not None)
        records[model] = {"preset": DEMO_PRESETS[model], "record": record, "served": chosen, "why": why}
    return records


def _precision_rows(records: dict[str, dict]) -> list[str]:
    rows = ["| network | precision | s per series | speed vs FP32 | R^2 / Dice loss | SSIM loss | decisions changed | "
            "accepted |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for model, entry in records.items():
        record = entry["record"]
        for precision in ("fp32", "bf16", "int8"):
            if precision not in record:
                why = {"fp32": "", "bf16": "not measured for these weights (`collat-train precision`)",
                       "int8": "not measured: no INT8 IR made from these weights (`collat-train quantize`), or "
                               "this CPU has no VNNI"}[precision]
                if why:
                    rows.append(f"| {model} | {precision} | | | | | | {why} |")
                continue
            row = record[precision]
            loss = row.get("loss_vs_fp32", {})
            changed = sum(row.get("changed", {}).values()) if precision != "fp32" else 0
            first = loss.get("r2", loss.get("dice"))
            accepted = "yes" if precision in record.get("accepted", []) else "no: " + "; ".join(row.get("reasons", []))
            seconds = row.get("seconds_per_series") or (record.get("fp32", {}).get("seconds_per_series", 0.0)
                                                        / row.get("speed_vs_fp32", 1.0))
            rows.append(f"| {model} | {precision} | {seconds:.3f} | "
                        f"{row.get('speed_vs_fp32', 1.0):.2f}x | {'' if first is None else f'{first:+.5f}'} | "
                        f"{'' if 'ssim' not in loss else format(loss['ssim'], '+.5f')} | {changed} | {accepted} |")
    return rows


def _peak_name(runtime: str) -> str:
    return "bf16" if runtime.endswith("bf16") else "fp32"


def _ratio_line(name: str, value: float, target: float, unit: str = "x") -> str:
    verdict = "met" if value >= target else "NOT met"
    shown = f"{value:.2f}{unit}" if unit == "x" else f"{value:.0%}"
    goal = f">= {target:.2f}{unit}" if unit == "x" else f">= {target:.0%}"
    return f"| {name} | {shown} | {goal} | {verdict} |"


def render(r: dict) -> str:
    from collat_export.weights import DEMO_PRESETS

    m = r["machine"]
    served4 = next(s for s in r["served"] if s["concurrency"] == 4)
    speedup = served4["patients_per_min"] / r["baseline"]["patients_per_min"]
    b = r["breakdown"]
    on = {(p["model"], p["batch"]): p for p in r["perf"] if p["concurrency"] == 8}
    off = {(p["model"], p["batch"]): p for p in r["perf_off"]}
    batching = {k: on[k]["throughput"] / off[k]["throughput"] for k in off}
    rt = {(x["model"], x["preset"], x["runtime"]): x for x in r["runtimes"]}
    served_runtime = "openvino" if ("hypo", "full", "openvino") in rt else "onnxruntime"
    served_as = {m: served_runtime + ("-bf16" if r["precision"][m]["served"] == "bf16"
                                      and (m, "full", served_runtime + "-bf16") in rt else "")
                 for m in ("mrod", "hypo")}
    unet, mrod = rt[("hypo", "full", served_as["hypo"])], rt[("mrod", "full", served_as["mrod"])]
    full = r["full_end_to_end"]
    sk = r["soak"]
    bf16_peak = r["matmul"].get("bf16_peak")
    baseline_ppm = r["baseline"]["patients_per_min"]
    unet12 = next(p for p in r["perf"] if p["model"] == "hypoperfusion_unet" and p["batch"] == 12
                  and p["concurrency"] == 1)
    unet_patients_min = unet12["throughput"] / 12 * 60.0  # perf_analyzer counts slabs (batch items) per second
    lines = [
        "# Benchmarks", "",
        "Regenerated by `make bench` (`python -m benchmarks.run`); every figure below comes from one run on the "
        "machine described, measured side by side. Served models: the demo weights (3D-MROD-Net "
        f"`{DEMO_PRESETS['mrod']}`, U-Net `{DEMO_PRESETS['hypo']}`), "
        f"CPU repository ({served_runtime} in Triton's Python backend); efficiency figures and the end-to-end "
        "time per patient: the `full` presets.", "",
        "## Machine", "",
        *[f"- {k}: {v}" for k, v in m.items()],
        f"- fp32 matmul peak (2048x2048, best of numpy/torch, start of the run): {r['matmul']['peak']:.1f} GFLOP/s",
        "- bf16 matmul peak (2048x2048, torch, start of the run): " +
        (f"{bf16_peak:.1f} GFLOP/s ({bf16_peak / r['matmul']['peak']:.1f}x fp32)" if bf16_peak else
         "no BF16 units on this CPU: its networks serve FP32"),
        f"- run time of `python -m benchmarks.run` (`make bench` once the venv exists): {r['seconds'] / 60:.1f} min",
        "",
        "## Targets (ratios measured in this run)", "",
        "| figure | measured | target | |", "|---|---:|---:|---|",
        _ratio_line("served stroke_triage at concurrency 4 / baseline script (patients per minute)", speedup, 3.0),
        f"| full presets, both branches, end to end at concurrency 1 (client call to maps on disk, median s) | "
        f"{full['median_s']:.2f} s | <= 5 s | {'met' if full['median_s'] <= 5.0 else 'NOT met'} |",
        f"| warm server memory (PSS of tritonserver and its stubs; RSS sum {sk['warm_rss_mb']:.0f} MB) | "
        f"{sk['warm_pss_mb']:.0f} MB | <= 2500 MB | {'met' if sk['warm_pss_mb'] <= 2500 else 'NOT met'} |",
        f"| memory growth over the soak ({sk['requests']} patients at concurrency {sk['concurrency']}) | "
        f"{sk['growth']:+.1%} | <= +10% | {'met' if sk['growth'] <= 0.10 else 'NOT met'} |",
        "| time outside the networks at concurrency 1 (stroke_triage) | "
        f"{b['outside_networks_share']:.0%} | <= 25% | {'met' if b['outside_networks_share'] <= 0.25 else 'NOT met'} |",
        _ratio_line("hypoperfusion_unet dynamic batching on/off at concurrency 8, 12-slab requests",
                    batching[("hypoperfusion_unet", 12)], 1.3),
        _ratio_line("hypoperfusion_unet dynamic batching on/off at concurrency 8, 1-slab requests",
                    batching[("hypoperfusion_unet", 1)], 1.3),
        _ratio_line(f"{served_as['hypo']} (served) U-Net (full) / {_peak_name(served_as['hypo'])} matmul peak",
                    unet["efficiency"], 0.80, unit="%"),
        _ratio_line(f"{served_as['mrod']} (served) 3D-MROD-Net (full) / {_peak_name(served_as['mrod'])} matmul peak",
                    mrod["efficiency"], 0.50, unit="%"),
        "| GPU: TensorRT FP16 vs PyTorch eager | not measured | | no GPU was available to this task |",
        f"| registration of a native DWI to MNI (median s) | {r['registration']['median_s']:.2f} s | <= 3 s | "
        f"{'met' if r['registration']['median_s'] <= 3.0 else 'NOT met'} |", "",
        *registration.render(r["registration"]),
        "## Baseline script vs served", "",
        f"Baseline (`benchmarks/baseline_script.py`, one process, PyTorch eager, sequential): "
        f"{r['baseline']['patients_per_min']:.2f} patients/min, p50 {r['baseline']['p50_s']:.2f} s per patient "
        f"(mean of a run before and a run after the served sweep: "
        f"{' and '.join(f'{x:.2f}' for x in r['baseline']['runs_patients_per_min'])}).", "",
        f"Ceiling on this machine: the U-Net alone (perf_analyzer, 12-slab requests = one patient, concurrency 1, "
        f"both cores) serves {unet_patients_min:.1f} patients/min = {unet_patients_min / baseline_ppm:.2f}x the "
        "baseline; every other step shares the same two cores, so no concurrency level can exceed it here.", "",
        "| concurrency | requests | patients/min | p50 s | p95 s | vs baseline |", "|---:|---:|---:|---:|---:|---:|",
        *[f"| {s['concurrency']} | {s['requests']} | {s['patients_per_min']:.2f} | {s['p50_s']:.2f} | "
          f"{s['p95_s']:.2f} | {s['patients_per_min'] / r['baseline']['patients_per_min']:.2f}x |"
          for s in r["served"]], "",
        "## Where the time goes (stroke_triage, concurrency 1, per request)", "",
        "From Triton's statistics (queue + compute of each step) and the client's end-to-end time (SDK over HTTP, "
        "reading the .nii.gz files inside the timed call). The two branches run side by side, so the latency is "
        "client + the longer branch + the merge; time outside the networks = end-to-end - the network time of "
        f"the longer branch (here: {b['critical_branch']}). The share of all work sums every step, parallel or "
        "not.", "",
        "| part | ms |", "|---|---:|",
        *[f"| {k.removesuffix('_ms')} | {b[k]:.0f} |" for k in b if k.endswith("_ms")],
        f"| **share of end-to-end latency outside the networks** | **{b['outside_networks_share']:.0%}** |",
        f"| share of all work outside the networks | {b['outside_networks_share_of_all_work']:.0%} |", "",
        "MONAI's published bundles are dominated by pre/post-processing (TensorRT made compute 3.3x faster but "
        "end-to-end only 1.14x); the share above says how much a faster network would buy here.", "",
        "### Hot spots fixed, before and after (measured in this run, same data, same values)", "",
        "| hot spot | where | before s | after s | speed-up | same values |", "|---|---|---:|---:|---:|---|",
        *[f"| {h['hot_spot']} | {h['where']} | {h['before_s']:.3f} | {h['after_s']:.3f} | {h['speedup']:.1f}x | "
          f"{'yes' if h['same_values'] else 'NO'} |" for h in r["hotspots"]], "",
        "### py-spy on the served Python steps (3 requests at concurrency 1)", "",
        "Share of each step's busy samples by the line of science code running (numpy calls under it included); "
        "`benchmarks/pyspy.py` attaches `py-spy record --nonblocking` to each Python-backend stub.", "",
        *([f"- **{model}**: " + "; ".join(f"{share:.0%} {line}" for line, share in rows)
           for model, rows in r["pyspy"].items()] or ["- py-spy not installed: not profiled"]), "",
        "## perf_analyzer (gRPC, real phantom inputs)", "",
        "| model | batch | concurrency | infer/s | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|",
        *[f"| {p['model']} | {p['batch']} | {p['concurrency']} | {p['throughput']:.2f} | {p['p50_ms']:.0f} | "
          f"{p['p95_ms']:.0f} | {p['p99_ms']:.0f} |" for p in r["perf"]], "",
        "Dynamic batching off (a second repository built with `--no-dynamic-batching`), concurrency 8:", "",
        "| model | batch | infer/s off | infer/s on | on/off |", "|---|---:|---:|---:|---:|",
        *[f"| {k[0]} | {k[1]} | {off[k]['throughput']:.2f} | {on[k]['throughput']:.2f} | {batching[k]:.2f}x |"
          for k in off], "",
        "## CPU runtimes: OpenVINO vs ONNX Runtime, and their efficiency (2 threads, same ONNX files)", "",
        "PyTorch seconds: median of 3 after a warm-up. Each runtime: "
        f"{unet['rounds']} rounds, each timing about one network run's length of 2048x2048 fp32 products and then "
        "one network run; seconds are the rounds' median, efficiency the median (and range) of the rounds' ratios. "
        "This machine's speed changes within seconds, so a peak taken once would not describe the moment the "
        "network ran. The U-Net runs one 16-slice slab (a patient is 12).", "",
        "| network | preset | GFLOP | PyTorch s | runtime | s | GFLOP/s | peak GFLOP/s | of matmul peak | range |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
        *[f"| {x['model']} | {x['preset']} | {x['gflop']:.2f} | {x['torch_s']:.3f} | {x['runtime']} | "
          f"{x['seconds']:.3f} | {x['gflops_rounds']:.1f} | {x['peak_gflops_rounds']:.1f} | {x['efficiency']:.0%} | "
          f"{x['efficiency_min']:.0%}-{x['efficiency_max']:.0%} |" for x in r["runtimes"]], "",
        *(["OpenVINO / ONNX Runtime speed, same run: " + ", ".join(
            f"{m} {p} {rt[(m, p, 'onnxruntime')]['seconds'] / rt[(m, p, 'openvino')]['seconds']:.2f}x"
            for p in ("tiny", "full") for m in ("mrod", "hypo") if (m, p, "openvino") in rt) + ".", ""]
          if ("hypo", "full", "openvino") in rt else ["OpenVINO is not installed: not measured.", ""]),
        *(["The `openvino-bf16` rows are held to the bf16 matmul peak measured in the same rounds; against the "
           "fp32 peak at the start of the run they reach " + ", ".join(
               f"{x['model']} {x['preset']} {x['gflops_rounds'] / r['matmul']['peak']:.0%}"
               for x in r["runtimes"] if x["runtime"] == "openvino-bf16") + ".", ""]
          if any(x["runtime"] == "openvino-bf16" for x in r["runtimes"]) else []),
        "## Precision of the served networks (their cards, held-out phantoms)", "",
        "Each lower precision against FP32 on the served steps over the card's held-out series "
        "(`collat-train precision`); accepted only within 0.005 on every metric and with no CPS grade or "
        "DEFUSE 3 / DAWN decision changed. Served on this CPU: " + "; ".join(
            f"{m} {e['preset']} {e['served'].upper()} ({e['why']})" for m, e in r["precision"].items()) + ".", "",
        *_precision_rows(r["precision"]), "",
        "## Memory of the served default repository", "",
        f"A fresh server on the repository `make serve` builds; {sk['warmup']} whole patients at concurrency "
        f"{sk['concurrency']} to warm it (every instance has run), then {sk['requests']} more "
        f"({sk['seconds']:.0f} s). PSS counts each page shared between tritonserver and its "
        f"{sk['processes'] - 1} Python-backend stubs once (their shared-memory regions, libraries); the RSS sum "
        "counts such pages once per process.", "",
        "| | PSS MB | RSS sum MB |", "|---|---:|---:|",
        f"| warm | {sk['warm_pss_mb']:.0f} | {sk['warm_rss_mb']:.0f} |",
        f"| after the soak | {sk['after_pss_mb']:.0f} | {sk['after_rss_mb']:.0f} |", "",
        "## Full presets end to end (random weights, both branches, concurrency 1)", "",
        "Seconds from `client.infer` to the maps written by `result.save` (SDK over HTTP, .nii.gz read inside the "
        "timed call), after a warm-up request: " + ", ".join(f"{s:.2f}" for s in full["seconds"]) +
        f" (median {full['median_s']:.2f} s; target <= 5 s).", "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
