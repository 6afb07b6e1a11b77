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

Peers (issue #18): `BENCH_SD_SCRIPTS=/path/to/sd-scripts` (a checkout the user fetched; never
vendored) adds sd-scripts' train_network.py with the same flags on the same single-file
checkpoint, run by `BENCH_SD_SCRIPTS_PY` (default: this interpreter); each sd-scripts run is
followed at once by ours with the same settings so their ratio is measured close in time on a
shared machine. `--precisions fp32,bf16` adds `--mixed_precision bf16` runs (`full_bf16` adds
`--full_bf16` too). `--envelope` adds the overhead of the secure envelope: wall time of
`secure-trainer run` minus `secure-trainer train` with the same args on the tiny model (local
OpenBao dev server, gocryptfs workspace, as scripts/demo.sh).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STEP_LINE = re.compile(r"^step (\d+)/(\d+)")
TQDM_STEP = re.compile(r"^steps:\s+\d+%\|.*?\|\s*(\d+)/(\d+) \[")
PRECISION_FLAGS = {"fp32": ["--mixed_precision", "no"], "bf16": ["--mixed_precision", "bf16"],
                   "full_bf16": ["--mixed_precision", "bf16", "--full_bf16"]}


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


def _lines(stream: IO[bytes]) -> Iterator[str]:
    """Lines of a child's output, split at \\n and at \\r (tqdm redraws its bar with \\r)."""
    pending = b""
    while True:
        chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
        if not chunk:
            break
        pending += chunk
        parts = re.split(rb"[\r\n]", pending)
        pending = parts.pop()
        for part in parts:
            yield part.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def run_measured(argv: list[str], *, warmup: int, timeout: float,
                 cwd: Path | None = None) -> tuple[int, float, int, float, float]:
    """Run `argv`; return (steps seen, steady s/step, peak RSS bytes, wall s, start→first step s).

    Raises RuntimeError (with the tail of the output) when the child fails.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=_env(), cwd=cwd or REPO)
    stamps: dict[int, float] = {}
    tail: list[str] = []
    assert proc.stdout is not None
    for line in _lines(proc.stdout):
        now = time.perf_counter()
        match = STEP_LINE.match(line.strip()) or TQDM_STEP.match(line.strip())
        if match and int(match.group(1)) not in stamps:
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


def kohya_flags(model: Path, data: Path, out: Path, resolution: int, steps: int, cache: bool,
                precision: str = "fp32") -> list[str]:
    """The train_network.py flags both trainers get: same model file, images, rank, LR, steps.
    `--enable_bucket`: the tiny case's images (64–160 px) are smaller than the resolution, and
    sd-scripts refuses to upscale them without buckets ("image size is small"); with the square
    images of the SD1.5-size cases every bucket is res x res."""
    argv = ["--pretrained_model_name_or_path", str(model), "--train_data_dir", str(data),
            "--enable_bucket",
            "--caption_extension", ".txt", "--resolution", str(resolution), "--output_dir", str(out),
            "--network_dim", "16", "--network_alpha", "16", "--learning_rate", "1e-4",
            "--train_batch_size", "1", "--max_train_steps", str(steps), "--seed", "0",
            "--optimizer_type", "AdamW", "--sdpa", *PRECISION_FLAGS[precision]]
    return argv + (["--cache_latents"] if cache else [])


def ours_argv(model: Path, data: Path, out: Path, resolution: int, steps: int,
              cache: bool, precision: str = "fp32") -> list[str]:
    """`secure-trainer train` with Kohya flags equivalent to the bare loop's settings."""
    return [str(BIN / "secure-trainer"), "train", "--progress-every", "1",
            *kohya_flags(model, data, out, resolution, steps, cache, precision)]


def sd_scripts_argv(python: Path, checkout: Path, tokenizers: Path, model: Path, data: Path,
                    out: Path, resolution: int, steps: int, cache: bool,
                    precision: str = "fp32") -> list[str]:
    """sd-scripts' train_network.py with our flags plus what it needs to run offline:
    networks.lora (its LoRA module), safetensors output, and a tokenizer folder in the layout
    of its --tokenizer_cache_dir (it would otherwise download the CLIP tokenizer)."""
    return [str(python), str(checkout / "train_network.py"),
            *kohya_flags(model, data, out, resolution, steps, cache, precision),
            "--network_module", "networks.lora", "--save_model_as", "safetensors",
            "--tokenizer_cache_dir", str(tokenizers)]


def sd_scripts_tokenizers(root: Path, model_dir: Path) -> Path:
    """A --tokenizer_cache_dir holding the model's own CLIP tokenizer under the name sd-scripts
    looks for (`openai_clip-vit-large-patch14`)."""
    cache = root / "sd-scripts-tokenizers"
    target = cache / "openai_clip-vit-large-patch14"
    if not target.is_dir():
        target.mkdir(parents=True)
        for f in (model_dir / "tokenizer").iterdir():
            (target / f.name).write_bytes(f.read_bytes())
    return cache


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


def square_data(root: Path, side: int) -> Path:
    """(Create or reuse) the synthetic dataset with every image `side`x`side` px, for the
    SD1.5-size cases. Mixed aspect ratios would put each trainer on the bucket shapes of the
    images it happens to draw at the measured steps, and sd-scripts draws in another order than
    ours: at 256 px that alone moved a median by more than the difference being measured. One
    square size at or above every resolution gives all three trainers the same res x res shape
    every step, and still makes each decode and downscale a real image."""
    data = root / f"data-square{side}"
    if not (data / "10_subject").is_dir():
        subprocess.run([str(BIN / "secure-trainer"), "dev", "dataset", "--square", str(side),
                        str(data)], check=True, env=_env(), timeout=300, stdout=subprocess.DEVNULL)
    return data


def prepare(root: Path, *, full: bool) -> tuple[Path, Path, Path | None]:
    """Create (or reuse) the tiny model, the full-size model and the synthetic dataset
    (mixed sizes, 64–160 px), each through `secure-trainer dev ...` in a subprocess (see the
    module docstring)."""
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


GLIBC = " (glibc malloc)"


def table(rows: list[Measurement]) -> str:
    """Markdown table: per case, s/step and peak RSS with ratios to the bare loop (same case)
    and to sd-scripts (same case and variant name after `sd-scripts`/`ours`)."""
    bare = {r.case: r for r in rows if r.variant == "bare"}
    peers = {(r.case, r.variant.removeprefix("sd-scripts")): r for r in rows
             if r.variant.startswith("sd-scripts")}
    out = [("| case | variant | steady s/step | × bare | × sd-scripts | peak RSS MiB | "
            "× sd-scripts | start→step 1 s |"),
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = bare.get(r.case) if r.variant.removesuffix(GLIBC) in ("ours", "ours fp32") \
            else None
        peer = (peers.get((r.case, r.variant.removeprefix("ours").removesuffix(GLIBC)))
                if r.variant.startswith("ours") else None)
        speed = f"{r.seconds_per_step / base.seconds_per_step:.2f}" if base else "-"
        vs_peer = f"{r.seconds_per_step / peer.seconds_per_step:.2f}" if peer else "-"
        mem = f"{r.peak_rss_bytes / peer.peak_rss_bytes:.2f}" if peer else "-"
        out.append(f"| {r.case} | {r.variant} | {r.seconds_per_step:.3f} | {speed} | {vs_peer} | "
                   f"{r.peak_rss_bytes / 2**20:.0f} | {mem} | {r.first_step_seconds:.1f} |")
    return "\n".join(out)


ENVELOPE_SCRIPT = r"""
set -euo pipefail
ST="$BIN/secure-trainer"
source scripts/demo-setup.sh
trap demo_cleanup EXIT
demo_site bench >/dev/null
demo_trainer_runtime
"$ST" workspace open >/dev/null
cp -r "$MODEL" "$ST_MOUNTPOINT/models/tiny"
"$ST" data import "$DATA" --name bench --workspace "$ST_MOUNTPOINT" >/dev/null
ARGS=(--caption_extension .txt --resolution 64 --network_dim 16 --network_alpha 16
      --learning_rate 1e-4 --train_batch_size 1 --max_train_steps "$STEPS" --seed 0)
time_train() {
  "$ST" workspace open >/dev/null
  local t0 t1
  t0=$(date +%s.%N)
  "$ST" train --pretrained_model_name_or_path "$ST_MOUNTPOINT/models/tiny" \
    --train_data_dir "$ST_MOUNTPOINT/datasets/bench" --output_dir "$ST_MOUNTPOINT/runs/bench-train" \
    "${ARGS[@]}" >/dev/null
  t1=$(date +%s.%N)
  "$ST" workspace close >/dev/null
  echo "train $(echo "$t1 - $t0" | bc)"
}
time_run() {
  local t0 t1
  t0=$(date +%s.%N)
  "$ST" run --policy "$POLICY" --pretrained_model_name_or_path models/tiny \
    --train_data_dir datasets/bench --output_name bench "${ARGS[@]}" >/dev/null
  t1=$(date +%s.%N)
  echo "run $(echo "$t1 - $t0" | bc)"
}
"$ST" workspace close >/dev/null
# ABBA order: a drift in the machine's load hits both sides alike.
time_train; time_run; time_run; time_train
"""


def envelope(root: Path, tiny: Path, data: Path, steps: int) -> tuple[float, float]:
    """(wall s of `train`, wall s of `run`), each the faster of two runs in ABBA order, with the
    same args on the tiny model, the data in a gocryptfs workspace (a fresh local site under
    `root`, as scripts/demo.sh; `train` reads the mounted workspace). Needs root."""
    env = _env() | {"BIN": str(BIN), "DEMO": str(root / "envelope"), "MODEL": str(tiny),
                    "DATA": str(data), "STEPS": str(steps)}
    done = subprocess.run(["bash", "-c", ENVELOPE_SCRIPT], env=env, cwd=REPO, text=True,
                          capture_output=True, timeout=1800, check=False)
    train_s = [float(v) for v in re.findall(r"^train ([\d.]+)$", done.stdout, re.MULTILINE)]
    run_s = [float(v) for v in re.findall(r"^run ([\d.]+)$", done.stdout, re.MULTILINE)]
    if done.returncode != 0 or len(train_s) != 2 or len(run_s) != 2:
        raise RuntimeError("envelope run failed:\n" + "\n".join(
            (done.stdout + done.stderr).splitlines()[-15:]))
    # The least disturbed of each pair: load on a shared box only ever adds time.
    return min(train_s), min(run_s)


@dataclass(frozen=True)
class Peer:
    """An external sd-scripts checkout to compare against (BENCH_SD_SCRIPTS)."""

    checkout: Path
    python: Path


def peer_from_env() -> Peer | None:
    """BENCH_SD_SCRIPTS (+ BENCH_SD_SCRIPTS_PY), or None when unset. Exits 2 when the checkout
    has no train_network.py."""
    checkout = os.environ.get("BENCH_SD_SCRIPTS")
    if not checkout:
        return None
    path = Path(checkout).resolve()
    if not (path / "train_network.py").is_file():
        sys.exit("BENCH_SD_SCRIPTS must point at an sd-scripts checkout (train_network.py)")
    return Peer(path, Path(os.environ.get("BENCH_SD_SCRIPTS_PY") or sys.executable))


def full_cases(model_file: Path, data: Path, root: Path, resolutions: list[int], steps: int,
               precisions: list[str], peer: Peer | None, tokenizers: Path | None,
               cached_precisions: list[str] | None = None, glibc: bool = False,
               ) -> list[tuple[str, str, list[str], Path]]:
    """(case, variant, argv, cwd) for the SD1.5-size model: per resolution the bare loop (fp32)
    once, then per (cache, precision) sd-scripts (when given) directly followed by ours.
    `cached_precisions` (default: `precisions`) are the precisions run with --cache_latents;
    `glibc` adds ours fp32 uncached once more with ST_ALLOCATOR=system."""
    runs: list[tuple[str, str, list[str], Path]] = []
    diffusers_dir = model_file.parent / "diffusers"
    for res in resolutions:
        case = f"SD1.5-size {res}px"
        runs.append((case, "bare", bare_argv(diffusers_dir, data, res, steps), REPO))
        for cache in (False, True):
            chosen = cached_precisions if (cache and cached_precisions is not None) else precisions
            for precision in chosen:
                label = f" {precision}{' --cache_latents' if cache else ''}"
                if peer is not None and tokenizers is not None:
                    runs.append((case, "sd-scripts" + label, sd_scripts_argv(
                        peer.python, peer.checkout, tokenizers, model_file, data,
                        root / "runs" / "sd-scripts", res, steps, cache, precision),
                        peer.checkout))
                argv = ours_argv(model_file, data, root / "runs" / "ours", res, steps, cache,
                                 precision)
                runs.append((case, "ours" + label, argv, REPO))
                if glibc and precision == "fp32" and not cache:
                    # The same run on glibc malloc (entrypoint/allocator.py): what the allocator
                    # alone is worth, and our overhead over the bare loop, which runs on glibc.
                    runs.append((case, "ours" + label + GLIBC, ["env", "ST_ALLOCATOR=system",
                                                                 *argv], REPO))
    return runs


def main() -> None:
    """Run every case and variant once; print and write the table."""
    parser = argparse.ArgumentParser(description="secure-trainer vs bare diffusers+peft loop "
                                     "(and sd-scripts with BENCH_SD_SCRIPTS=/path)")
    parser.add_argument("--full-512", action="store_true", help="also run the full model at 512 px")
    parser.add_argument("--resolutions", default="",
                        help="comma list of px for the SD1.5-size model (overrides --full-512)")
    parser.add_argument("--no-full", action="store_true", help="only the tiny model (quick check)")
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny 64 px case")
    parser.add_argument("--precisions", default="fp32",
                        help="comma list of fp32, bf16, full_bf16 for the SD1.5-size cases")
    parser.add_argument("--cached-precisions", default=None,
                        help="precisions of the --cache_latents runs (default: --precisions)")
    parser.add_argument("--glibc", action="store_true",
                        help="add ours fp32 uncached on glibc malloc (ST_ALLOCATOR=system)")
    parser.add_argument("--envelope", action="store_true",
                        help="add `run` minus `train` on the tiny model (needs root, FUSE)")
    parser.add_argument("--sdxl", action="store_true", help="add the tiny SDXL case (64 px)")
    parser.add_argument("--sdxl-full", action="store_true",
                        help="add the full-size random SDXL at 512 px (slow on CPU; GPU advised)")
    parser.add_argument("--only-sdxl", action="store_true", help="skip the SD1.5 cases")
    parser.add_argument("--tiny-steps", type=int, default=60)
    parser.add_argument("--full-steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, help="steps excluded from s/step")
    parser.add_argument("--out", type=Path, default=REPO / ".bench")
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    cached = (None if args.cached_precisions is None else
              [p.strip() for p in args.cached_precisions.split(",") if p.strip()])
    if any(p not in PRECISION_FLAGS for p in precisions + (cached or [])):
        parser.error(f"--precisions: choose from {', '.join(PRECISION_FLAGS)}")
    peer = peer_from_env()
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    tiny, data, big = prepare(root, full=not (args.no_full or args.only_sdxl))
    runs: list[tuple[str, str, list[str], Path]] = []
    if not (args.only_sdxl or args.no_tiny):
        runs.append(("tiny 64px", "bare", bare_argv(tiny, data, 64, args.tiny_steps), REPO))
        runs.append(("tiny 64px", "ours", ours_argv(tiny, data, root / "runs" / "ours", 64,
                                                    args.tiny_steps, False), REPO))
    if big is not None:
        model_file = next(big.parent.glob("*.safetensors"))
        tokenizers = sd_scripts_tokenizers(root, big) if peer is not None else None
        resolutions = [256, 512] if args.full_512 else [256]
        if args.resolutions:
            resolutions = [int(r) for r in args.resolutions.split(",") if r.strip()]
        full_data = square_data(root, max([512, *resolutions]))
        runs += full_cases(model_file, full_data, root, resolutions, args.full_steps, precisions,
                           peer, tokenizers, cached, glibc=args.glibc)
    if args.sdxl or args.sdxl_full or args.only_sdxl:
        sdxl_tiny, sdxl_big = prepare_sdxl(root, full=args.sdxl_full)
        sdxl = [("tiny SDXL 64px (recipe)", sdxl_tiny, 64, args.tiny_steps)]
        if sdxl_big is not None:
            sdxl.append(("SDXL-size 512px (recipe)", sdxl_big, 512, args.full_steps))
        for case, model, res, steps in sdxl:
            runs.append((case, "bare", bare_argv(model, data, res, steps, sdxl=True), REPO))
            runs.append((case, "ours", ours_argv(model, data, root / "runs" / "sdxl", res, steps,
                                                 False) + SDXL_RECIPE, REPO))
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    header = (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores "
              f"(threads: {threads}); steady s/step = median step interval after {args.warmup} "
              "warm-up steps; LoRA rank 16 (alpha 16) on UNet + text encoder, batch 1, AdamW, "
              "SDPA, the same single-file checkpoint and images for ours and sd-scripts (the "
              "bare loop: fp32, the diffusers folder; SDXL cases: the low-memory recipe, "
              "UNet-only LoRA, bf16 base weights).\n\n")
    extra = ""
    if args.envelope:
        # First: short, and its figure survives when a long case is cut off below.
        print("[bench] envelope: run vs train on the tiny model", flush=True)
        train_s, run_s = envelope(root, tiny, data, 20)
        extra = (f"\nEnvelope (tiny model, 20 steps, data in the gocryptfs workspace, faster of "
                 f"2 runs each in ABBA order): `train` {train_s:.1f} s, `run` {run_s:.1f} s, "
                 f"overhead {run_s - train_s:.1f} s.\n")
        (root / "results.md").write_text(header + extra, encoding="utf-8")
    rows: list[Measurement] = []
    for case, variant, argv, cwd in runs:
        steps = int(argv[argv.index("--max_train_steps") + 1]) if "--max_train_steps" in argv \
            else int(argv[argv.index("--steps") + 1])
        print(f"[bench] {case}: {variant} ({steps} steps)", flush=True)
        try:
            n, steady, rss, wall, first = run_measured(argv, warmup=args.warmup,
                                                       timeout=60 * 30, cwd=cwd)
        except RuntimeError as error:
            if not variant.startswith("sd-scripts"):
                raise
            # An external checkout we do not control: report it and keep our own figures.
            print(f"[bench] {case}: {variant} failed, left out of the table\n{error}", flush=True)
            continue
        rows.append(Measurement(case, variant, n, steady, rss, wall, first))
        # Rewritten after every run so a cut-off bench still leaves what it measured.
        (root / "results.md").write_text(header + table(rows) + "\n" + extra, encoding="utf-8")
    result = header + table(rows) + "\n" + extra
    (root / "results.md").write_text(result, encoding="utf-8")
    print(result)


if __name__ == "__main__":
    main()
