"""`python -m secure_trainer.devtools.llm_bench`: train-llm against a bare transformers+peft loop.

One invocation builds a random Llama (`--hidden`, `--layers`) and a synthetic chat corpus,
then runs as separate subprocesses, on the same batches (batch `--batch`, `--cutoff` tokens,
LoRA rank 8 on every linear layer, AdamW, fp32, CPU): (a) the bare loop (`--child bare`:
the model's own loss, no masking logic, no checks), (b) `secure-trainer train-llm`, (c) the
same with `--dp` (record unit, σ = 1, expected batch `--batch`). Steady s/step is the median
interval between per-step lines after the warm-up; peak RSS comes from os.wait4 of each
child; tokens/s = the corpus' mean tokens per batch / s/step. The parent never imports torch
(Linux would carry its RSS high-water mark into a forked child). Writes only below WORKDIR.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STEP_LINE = re.compile(r"^step (\d+)/(\d+)")
TOKENS_LINE = re.compile(r"^tokens-per-batch ([0-9.]+)$")


@dataclass(frozen=True)
class BenchRow:
    """One variant's figures."""

    variant: str
    steps: int
    seconds_per_step: float
    peak_rss_bytes: int


def _measure(argv: list[str], warmup: int) -> tuple[int, float, int, list[str]]:
    """Run `argv`; return (steps seen, median steady s/step, peak RSS bytes, output lines).

    Raises RuntimeError with the tail of the output when the child fails.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get(
        "OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    stamps: list[float] = []
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if STEP_LINE.match(line):
            stamps.append(time.perf_counter())
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("bench child failed:\n" + "\n".join(lines[-15:]))
    gaps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:], strict=False)]
    return len(stamps), statistics.median(gaps) if gaps else float("nan"), \
        usage.ru_maxrss * 1024, lines


def _child_build(workdir: Path, hidden: int, layers: int) -> None:
    from secure_trainer.devtools.synthetic_text import make_text_dataset
    from secure_trainer.devtools.tiny_llm import make_tiny_llm

    make_tiny_llm(workdir / "model", hidden_size=hidden, layers=layers)
    make_text_dataset(workdir / "data", subjects=40, per_subject=4)


def _child_bare(workdir: Path, steps: int, batch: int, cutoff: int) -> None:
    """The bare loop: tokenized by our template code (same batches), trained by hand."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from secure_trainer.llm.batches import collate, epoch_batches
    from secure_trainer.llm.data import read_jsonl
    from secure_trainer.llm.template import encode

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(workdir / "model", local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(workdir / "model", local_files_only=True)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.train()
    examples = [encode(tok, r.turns, "chat", cutoff)
                for r in read_jsonl(workdir / "data" / "chat.jsonl")]
    examples = [e for e in examples if e.trained_tokens]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    order = [b for epoch in range(1, 1000) for b in epoch_batches(len(examples), batch, 0, epoch)]
    widths = []
    for step, indices in enumerate(order[:steps], start=1):
        b = collate([examples[i] for i in indices], int(tok.pad_token_id))
        widths.append(int(b.attention_mask.sum()))
        loss = model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                     labels=b.labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        print(f"step {step}/{steps}", flush=True)
    print(f"tokens-per-batch {sum(widths) / len(widths):.1f}", flush=True)


def run(workdir: Path, *, steps: int = 30, batch: int = 8, cutoff: int = 128,
        hidden: int = 256, layers: int = 4, warmup: int = 3) -> tuple[list[BenchRow], float]:
    """Build, run the three variants; return their rows and the mean tokens per batch."""
    py = [sys.executable, "-m", "secure_trainer.devtools.llm_bench"]
    subprocess.run([*py, "--child", "build", "--hidden", str(hidden), "--layers", str(layers),
                    str(workdir)], check=True, capture_output=True)
    common = ["--model_name_or_path", str(workdir / "model"), "--dataset",
              str(workdir / "data" / "chat.jsonl"), "--lora_rank", "8", "--cutoff_len",
              str(cutoff), "--per_device_train_batch_size", str(batch), "--max_steps",
              str(steps), "--learning_rate", "1e-4", "--overwrite_output_dir",
              "--progress-every", "1"]
    cli = [sys.executable, "-m", "entrypoint.cli", "train-llm"]
    variants = [
        ("bare transformers+peft", [*py, "--child", "bare", "--steps", str(steps), "--batch",
                                    str(batch), "--cutoff", str(cutoff), str(workdir)]),
        ("train-llm", [*cli, *common, "--output_dir", str(workdir / "out")]),
        ("train-llm --dp", [*cli, *common, "--output_dir", str(workdir / "out-dp"), "--dp",
                            "--noise_multiplier", "1.0", "--dp_unit", "record"]),
    ]
    rows, tokens = [], float("nan")
    for name, argv in variants:
        seen, per_step, rss, lines = _measure(argv, warmup)
        rows.append(BenchRow(variant=name, steps=seen, seconds_per_step=per_step,
                             peak_rss_bytes=rss))
        for line in lines:
            match = TOKENS_LINE.match(line)
            if match:
                tokens = float(match.group(1))
    return rows, tokens


def table(rows: list[BenchRow], tokens_per_batch: float) -> str:
    """The Markdown table (ratios against the bare loop and, for DP, against non-DP)."""
    bare, ours = rows[0].seconds_per_step, rows[1].seconds_per_step
    out = ["| variant | s/step | tokens/s | peak RSS (MiB) | vs bare |",
           "|---|---|---|---|---|"]
    for row in rows:
        ratio = f"{row.seconds_per_step / bare:.2f}×"
        if row.variant.endswith("--dp"):
            ratio += f" ({row.seconds_per_step / ours:.2f}× non-DP)"
        out.append(f"| {row.variant} | {row.seconds_per_step:.3f} | "
                   f"{tokens_per_batch / row.seconds_per_step:.0f} | "
                   f"{row.peak_rss_bytes / 2**20:.0f} | {ratio} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Console entry (also the children's)."""
    parser = argparse.ArgumentParser(prog="python -m secure_trainer.devtools.llm_bench")
    parser.add_argument("workdir", nargs="?", type=Path)
    parser.add_argument("--child", choices=("build", "bare"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args(argv)
    if args.child == "build":
        _child_build(args.workdir, args.hidden, args.layers)
        return 0
    if args.child == "bare":
        _child_bare(args.workdir, args.steps, args.batch, args.cutoff)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        rows, tokens = run(workdir, steps=args.steps, batch=args.batch, cutoff=args.cutoff,
                           hidden=args.hidden, layers=args.layers)
        print(table(rows, tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
