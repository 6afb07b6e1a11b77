"""`make bench`: speed and memory of `secure-trainer train` against a bare diffusers+peft loop.

One invocation runs, as separate subprocesses, on (a) the tiny model at 64 px and (b) an
SD1.5-sized random model at 256 px (`--full-512` adds 512 px), and with `--sdxl` (c) the tiny
SDXL model at 64 px and `--sdxl-full` (d) the full-size random SDXL at 512 px, both with Kohya's
SDXL low-memory recipe (`--network_train_unet_only --cache_latents --cache_text_encoder_outputs
--gradient_checkpointing`, bf16 base weights) against the bare loop doing the same by hand
(`bare_loop.py --sdxl`). SD1.5 cases compare: the bare loop
(scripts/bare_loop.py), ours with default flags, and ours with `--cache_latents`. All runs:
LoRA rank 16 (alpha 16) on UNet + text encoder, batch 1, fp32, CPU, same images.
Steady-state s/step is the MEDIAN interval between the arrival times of each run's per-step
progress lines after the warm-up steps (robust to load spikes on a shared machine); peak RSS
comes from os.wait4 of each child. The models are built in subprocesses and this script never
imports torch: Linux carries a parent's RSS high-water mark into a forked child's ru_maxrss.
Writes the markdown table to .bench/results.md (models, data and LoRAs stay under .bench/).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STEP_LINE = re.compile(r"^step (\d+)/(\d+)")


@dataclass(frozen=True)
class Measurement:
    """One run's figures."""

    case: str
    variant: str
    steps: int
    seconds_per_step: float
    peak_rss_bytes: int
    wall_seconds: float
    first_step_seconds: float


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO)})
    return env


def run_measured(argv: list[str], *, warmup: int, timeout: float) -> tuple[int, float, int, float, float]:
    """Run `argv`; return (steps seen, steady s/step, peak RSS bytes, wall s, start→first step s).

    Raises RuntimeError (with the tail of the output) when the child fails.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(), cwd=REPO)
    stamps: dict[int, float] = {}
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter()
        match = STEP_LINE.match(line.strip())
        if match:
            stamps[int(match.group(1))] = now
        tail = (tail + [line.rstrip()])[-15:]
        if now - started > timeout:
            proc.kill()
            break
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not stamps:
        raise RuntimeError("benchmark run failed:\n" + "\n".join(tail))
    last = max(stamps)
    if last < 2:
        raise RuntimeError("benchmark run needs at least 2 steps")
    warm = max(1, min(warmup, last - 1))
    intervals = [stamps[k] - stamps[k - 1] for k in range(warm + 1, last + 1)
                 if k in stamps and k - 1 in stamps]
    steady = statistics.median(intervals)
    # ru_maxrss is in KiB on Linux.
    return last, steady, int(usage.ru_maxrss) * 1024, wall, stamps[min(stamps)] - started


def ours_argv(model: Path, data: Path, out: Path, resolution: int, steps: int,
              cache: bool) -> list[str]:
    """`secure-trainer train` with Kohya flags equivalent to the bare loop's settings."""
    argv = [str(BIN / "secure-trainer"), "train", "--progress-every", "1",
            "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(data),
            "--caption_extension", ".txt", "--resolution", str(resolution), "--output_dir", str(out),
            "--network_dim", "16", "--network_alpha", "16", "--learning_rate", "1e-4",
            "--train_batch_size", "1", "--max_train_steps", str(steps), "--seed", "0"]
    return argv + (["--cache_latents"] if cache else [])


def bare_argv(model: Path, data: Path, resolution: int, steps: int, *,
              sdxl: bool = False) -> list[str]:
    """The baseline loop with the same model, data, rank, LR and steps (SDXL: the recipe)."""
    argv = [sys.executable, str(REPO / "scripts" / "bare_loop.py"), "--model", str(model),
            "--data", str(data), "--resolution", str(resolution), "--steps", str(steps),
            "--rank", "16", "--lr", "1e-4"]
    return argv + (["--sdxl", "--mixed_precision", "bf16"] if sdxl else [])


# Kohya's SDXL low-memory recipe (sdxl_train_network.py flags).
SDXL_RECIPE = ["--sdxl", "--network_train_unet_only", "--cache_latents",
               "--cache_text_encoder_outputs", "--gradient_checkpointing", "--mixed_precision",
               "bf16"]


def prepare_sdxl(root: Path, *, full: bool) -> tuple[Path, Path | None]:
    """Create (or reuse) the tiny SDXL model and, with `full`, the full-size random SDXL."""
    cli = str(BIN / "secure-trainer")
    tiny = root / "sdxl-tiny" / "diffusers"
    if not (tiny / "model_index.json").is_file():
        subprocess.run([cli, "dev", "tiny-model", "--sdxl", str(root / "sdxl-tiny")], check=True,
                       env=_env(), timeout=600, stdout=subprocess.DEVNULL)
    big = root / "sdxl-full" / "diffusers"
    if full and not (big / "model_index.json").is_file():
        print("creating the SDXL-sized random model (once; ~7 GB under .bench/)", flush=True)
        subprocess.run([cli, "dev", "tiny-model", "--sdxl", "--full-size", str(root / "sdxl-full")],
                       check=True, env=_env(), timeout=3600, stdout=subprocess.DEVNULL)
    return tiny, big if full else None


def prepare(root: Path, *, full: bool) -> tuple[Path, Path, Path | None]:
    """Create (or reuse) the tiny model, the full-size model and the synthetic dataset,
    each through `secure-trainer dev ...` in a subprocess (see the module docstring)."""
    cli = str(BIN / "secure-trainer")
    data = root / "data"
    if not (data / "10_subject").is_dir():
        subprocess.run([cli, "dev", "dataset", str(data)], check=True, env=_env(), timeout=300,
                       stdout=subprocess.DEVNULL)
    tiny = root / "model-tiny" / "diffusers"
    if not (tiny / "model_index.json").is_file():
        subprocess.run([cli, "dev", "tiny-model", str(root / "model-tiny")], check=True,
                       env=_env(), timeout=600, stdout=subprocess.DEVNULL)
    big = root / "model-full" / "diffusers"
    if full and not (big / "model_index.json").is_file():
        print("creating the SD1.5-sized random model (once; ~4 GB under .bench/)", flush=True)
        subprocess.run([cli, "dev", "tiny-model", "--full-size", str(root / "model-full")],
                       check=True, env=_env(), timeout=1800, stdout=subprocess.DEVNULL)
    return tiny, data, big if full else None


def table(rows: list[Measurement]) -> str:
    """Markdown table with ours/bare ratios per case."""
    bare = {r.case: r for r in rows if r.variant == "bare"}
    out = ["| case | variant | steady s/step | × bare | peak RSS MiB | × bare | start→step 1 s |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = bare.get(r.case)
        speed = f"{r.seconds_per_step / base.seconds_per_step:.2f}" if base else "-"
        mem = f"{r.peak_rss_bytes / base.peak_rss_bytes:.2f}" if base else "-"
        out.append(f"| {r.case} | {r.variant} | {r.seconds_per_step:.3f} | {speed} | "
                   f"{r.peak_rss_bytes / 2**20:.0f} | {mem} | {r.first_step_seconds:.1f} |")
    return "\n".join(out)


def main() -> None:
    """Run every case and variant once; print and write the table."""
    parser = argparse.ArgumentParser(description="secure-trainer vs bare diffusers+peft loop")
    parser.add_argument("--full-512", action="store_true", help="also run the full model at 512 px")
    parser.add_argument("--no-full", action="store_true", help="only the tiny model (quick check)")
    parser.add_argument("--sdxl", action="store_true", help="add the tiny SDXL case (64 px)")
    parser.add_argument("--sdxl-full", action="store_true",
                        help="add the full-size random SDXL at 512 px (slow on CPU; GPU advised)")
    parser.add_argument("--only-sdxl", action="store_true", help="skip the SD1.5 cases")
    parser.add_argument("--tiny-steps", type=int, default=60)
    parser.add_argument("--full-steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, help="steps excluded from s/step")
    parser.add_argument("--out", type=Path, default=REPO / ".bench")
    args = parser.parse_args()
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    tiny, data, big = prepare(root, full=not (args.no_full or args.only_sdxl))
    cases: list[tuple[str, Path, int, int, bool]] = []
    if not args.only_sdxl:
        cases.append(("tiny 64px", tiny, 64, args.tiny_steps, False))
    if big is not None:
        cases.append(("SD1.5-size 256px", big, 256, args.full_steps, False))
        if args.full_512:
            cases.append(("SD1.5-size 512px", big, 512, args.full_steps, False))
    if args.sdxl or args.sdxl_full or args.only_sdxl:
        sdxl_tiny, sdxl_big = prepare_sdxl(root, full=args.sdxl_full)
        cases.append(("tiny SDXL 64px (recipe)", sdxl_tiny, 64, args.tiny_steps, True))
        if sdxl_big is not None:
            cases.append(("SDXL-size 512px (recipe)", sdxl_big, 512, args.full_steps, True))
    rows: list[Measurement] = []
    for case, model, res, steps, sdxl in cases:
        if sdxl:
            variants = [("bare", bare_argv(model, data, res, steps, sdxl=True)),
                        ("ours", ours_argv(model, data, root / "runs" / "sdxl", res, steps, False)
                         + SDXL_RECIPE)]
        else:
            variants = [("bare", bare_argv(model, data, res, steps)),
                        ("ours", ours_argv(model, data, root / "runs" / "ours", res, steps, False)),
                        ("ours --cache_latents",
                         ours_argv(model, data, root / "runs" / "cache", res, steps, True))]
        for variant, argv in variants:
            print(f"[bench] {case}: {variant} ({steps} steps)", flush=True)
            n, steady, rss, wall, first = run_measured(argv, warmup=args.warmup,
                                                       timeout=60 * 30)
            rows.append(Measurement(case, variant, n, steady, rss, wall, first))
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    header = (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores "
              f"(threads: {threads}); steady s/step = median step interval after {args.warmup} warm-up steps; "
              "LoRA rank 16 on UNet + text encoder, batch 1, fp32 (SDXL cases: the low-memory "
              "recipe, UNet-only LoRA, bf16 base weights).\n\n")
    result = header + table(rows) + "\n"
    (root / "results.md").write_text(result, encoding="utf-8")
    print(result)


if __name__ == "__main__":
    main()
