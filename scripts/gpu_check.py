"""`scripts/gpu-check.sh`'s driver: GPU facts, then our trainer vs the bare loop, as one JSON.

Full mode (a CUDA GPU): the full-size random SD1.5 model at 512 px, bf16 mixed precision, SDPA
attention, LoRA rank 16 on UNet + text encoder, batch 1, a fixed number of steps, with
`secure-trainer train` and with scripts/bare_loop.py, each in its own process. Dry mode
(--dry-run, CPU): the tiny model at 64 px for a few steps, the same flags but float32 (bf16
autocast on a CPU without AMX is ~100x slower, too slow for CI), so the path cannot rot.

Figures: steady s/step is the median interval between consecutive `step k/N` lines after the
warm-up steps; images/s = batch / s/step; peak VRAM is torch.cuda.max_memory_allocated() of the
training process (peak RSS in dry mode); ratios are ours / bare. Models and data are built by
`secure-trainer dev ...` in subprocesses (scripts never import secure_trainer.devtools).
Must never: report a figure it did not measure (a failed run is an error, exit 1), or write
anything outside --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import runpy
import shutil
import statistics
import subprocess  # nosec B404 - fixed argv lists, no shell
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STEP_LINE = re.compile(r"^step (\d+)/(\d+)")
PEAK_LINE = "GPU_CHECK_PEAK "
BATCH = 1
RANK = 16


@dataclass(frozen=True)
class RunFigures:
    """One training run's measured figures."""

    steps: int
    seconds_per_step: float
    images_per_second: float
    peak_bytes: int
    """torch.cuda.max_memory_allocated() on a GPU, peak RSS (ru_maxrss) on CPU."""
    wall_seconds: float


def gpu_facts() -> dict[str, Any]:
    """What the machine is: torch/CUDA versions, device name, memory, capability, driver."""
    import torch

    facts: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                             "cuda_available": torch.cuda.is_available(),
                             "cuda": torch.version.cuda, "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(device=props.name, device_count=torch.cuda.device_count(),
                     memory_bytes=props.total_memory,
                     capability=f"{props.major}.{props.minor}",
                     multiprocessors=props.multi_processor_count,
                     bf16_supported=torch.cuda.is_bf16_supported())
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=driver_version,name,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             check=False, timeout=30)  # nosec B603 - fixed argv
        facts["nvidia_smi"] = out.stdout.strip() or f"exit {out.returncode}"
    return facts


def child(kind: str, argv: list[str]) -> int:
    """Run a trainer in this process, then print its peak memory (the parent parses it)."""
    import torch

    sys.argv = argv
    rc = 0
    try:
        if kind == "bare":
            runpy.run_path(str(REPO / "scripts" / "bare_loop.py"), run_name="__main__")
        else:
            from entrypoint.cli import main as cli_main

            cli_main()
    except SystemExit as exc:  # the CLI always exits through sys.exit
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(f"{PEAK_LINE}{peak}", flush=True)
    return rc


def measure(kind: str, argv: list[str], *, warmup: int, timeout: float) -> RunFigures:
    """Run one trainer in a child process; RuntimeError (with its output tail) on failure."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--", *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=REPO)  # nosec B603 - fixed argv
    stamps: dict[int, float] = {}
    tail: list[str] = []
    peak = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter()
        text = line.strip()
        match = STEP_LINE.match(text)
        if match:
            stamps[int(match.group(1))] = now
        elif text.startswith(PEAK_LINE):
            peak = int(text[len(PEAK_LINE):])
        tail = (tail + [line.rstrip()])[-20:]
        if now - started > timeout:
            proc.kill()
            break
    rc = proc.wait()
    wall = time.perf_counter() - started
    last = max(stamps, default=0)
    if rc != 0 or last < warmup + 2 or peak < 0:
        raise RuntimeError(f"{kind} run failed (exit {rc}, {last} steps):\n" + "\n".join(tail))
    intervals = [stamps[k] - stamps[k - 1] for k in range(warmup + 2, last + 1)
                 if k in stamps and k - 1 in stamps]
    steady = statistics.median(intervals)
    return RunFigures(last, steady, BATCH / steady, peak, wall)


def prepare(root: Path, *, full: bool) -> tuple[Path, Path]:
    """The random model (full-size SD1.5 or tiny) and the synthetic dataset, built once."""
    cli = [sys.executable, "-m", "entrypoint.cli", "dev"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    data = root / "data"
    if not (data / "10_subject").is_dir():
        subprocess.run([*cli, "dataset", str(data)], check=True, env=env, cwd=REPO,
                       stdout=subprocess.DEVNULL, timeout=600)  # nosec B603
    name = "model-full" if full else "model-tiny"
    model = root / name / "diffusers"
    if not (model / "model_index.json").is_file():
        subprocess.run([*cli, "tiny-model", *(["--full-size"] if full else []), str(root / name)],
                       check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                       timeout=1800)  # nosec B603
    return model, data


def argvs(model: Path, data: Path, out: Path, resolution: int, steps: int,
          device: str, precision: str) -> dict[str, list[str]]:
    """Equivalent command lines: `precision` mixed precision, SDPA, rank 16, batch 1, same data."""
    common = ["--resolution", str(resolution)]
    bare = ["bare_loop.py", "--model", str(model), "--data", str(data), *common,
            "--steps", str(steps), "--rank", str(RANK), "--lr", "1e-4", "--device", device,
            "--mixed_precision", precision]
    ours = ["secure-trainer", "train", "--progress-every", "1",
            "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(data),
            "--caption_extension", ".txt", *common, "--output_dir", str(out),
            "--network_dim", str(RANK), "--network_alpha", str(RANK), "--learning_rate", "1e-4",
            "--train_batch_size", str(BATCH), "--max_train_steps", str(steps), "--seed", "0",
            "--mixed_precision", precision, "--sdpa"]
    return {"bare": bare, "ours": ours}


def main(argv: list[str] | None = None) -> int:
    """Measure both trainers; print one JSON object (also written to --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny model, 64 px, few steps (CI)")
    parser.add_argument("--steps", type=int, help="training steps per run (default 30; dry 3)")
    parser.add_argument("--mixed-precision", choices=("bf16", "no"),
                        help="default bf16; dry no (float32)")
    parser.add_argument("--warmup", type=int, help="steps left out of s/step (default 5; dry 1)")
    parser.add_argument("--resolution", type=int, help="default 512; dry 64")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gpu-check",
                        help="models, data and LoRAs (outside the checkout: never carried)")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"] and len(argv) >= 3 and argv[2] == "--":
        # Internal: `--child bare|ours -- ARGV...` runs one trainer in this process.
        return child(argv[1], argv[3:])
    args = parser.parse_args(argv)
    dry = args.dry_run
    facts = gpu_facts()
    if not dry and not facts["cuda_available"]:
        print("gpu-check: no CUDA device (use --dry-run on a CPU machine)", file=sys.stderr)
        return 2
    steps = args.steps or (3 if dry else 30)
    precision = args.mixed_precision or ("no" if dry else "bf16")
    warmup = args.warmup if args.warmup is not None else (1 if dry else 5)
    resolution = args.resolution or (64 if dry else 512)
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model, data = prepare(root, full=not dry)
    prepare_seconds = time.perf_counter() - started
    device = "cpu" if dry else "cuda"
    runs: dict[str, RunFigures] = {}
    for kind, run_argv in argvs(model, data, root / "runs", resolution, steps, device,
                                precision).items():
        print(f"[gpu-check] {kind}: {steps} steps at {resolution} px on {device}", file=sys.stderr,
              flush=True)
        runs[kind] = measure(kind, run_argv, warmup=warmup, timeout=60 * 20)
    ours, bare = runs["ours"], runs["bare"]
    report = {
        "mode": "dry-run (CPU, tiny model)" if dry else "gpu (full-size SD1.5)",
        "facts": facts,
        "config": {"model": "random SD1.5-size" if not dry else "tiny", "resolution": resolution,
                   "steps": steps, "warmup": warmup, "batch": BATCH, "lora_rank": RANK,
                   "mixed_precision": precision, "attention": "sdpa", "device": device},
        "prepare_seconds": round(prepare_seconds, 1),
        "peak_memory_kind": "cuda max_memory_allocated" if not dry else "process peak RSS",
        "bare": asdict(bare), "ours": asdict(ours),
        "ratio_ours_to_bare": {"seconds_per_step": ours.seconds_per_step / bare.seconds_per_step,
                               "peak_memory": ours.peak_bytes / bare.peak_bytes},
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
