"""scripts/bench.py's peer plumbing as pure functions: the sd-scripts argv gets exactly our
Kohya flags plus what sd-scripts needs offline, each sd-scripts run is directly followed by
ours with the same settings, tqdm redraws are split into step lines, and the table's ratios
pair each of our variants with sd-scripts' same variant."""

from __future__ import annotations

import io
from pathlib import Path

from tests.unit.scripts.loader import load_script

bench = load_script("bench")


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _no_output(argv: list[str]) -> list[str]:
    at = argv.index("--output_dir")
    return argv[:at] + argv[at + 2:]


def test_sd_scripts_argv_carries_our_flags_and_its_offline_needs() -> None:
    model, data = Path("/m/full.safetensors"), Path("/d")
    ours = bench.ours_argv(model, data, Path("/o"), 512, 7, True, "bf16")
    peer = bench.sd_scripts_argv(Path("/py"), Path("/sds"), Path("/tok"), model, data, Path("/o"),
                                 512, 7, True, "bf16")
    assert peer[:2] == ["/py", "/sds/train_network.py"]
    shared = ours[ours.index("--pretrained_model_name_or_path"):]
    assert peer[2:2 + len(shared)] == shared  # identical Kohya flags, same order
    assert _flag(peer, "--network_module") == "networks.lora"
    assert _flag(peer, "--tokenizer_cache_dir") == "/tok"
    for name, value in [("--network_dim", "16"), ("--network_alpha", "16"),
                        ("--resolution", "512"), ("--max_train_steps", "7"),
                        ("--mixed_precision", "bf16"), ("--optimizer_type", "AdamW"),
                        ("--pretrained_model_name_or_path", str(model))]:
        assert _flag(peer, name) == value
    assert "--cache_latents" in peer and "--sdpa" in peer and "--full_bf16" not in peer
    assert "--enable_bucket" in peer and "--enable_bucket" in ours  # small images: upscale
    full = bench.sd_scripts_argv(Path("/py"), Path("/sds"), Path("/tok"), model, data, Path("/o"),
                                 256, 5, False, "full_bf16")
    assert "--full_bf16" in full and "--cache_latents" not in full
    fp32 = bench.ours_argv(model, data, Path("/o"), 256, 5, False)
    assert _flag(fp32, "--mixed_precision") == "no"


def test_each_sd_scripts_run_is_followed_by_ours_with_the_same_settings() -> None:
    peer = bench.Peer(Path("/sds"), Path("/py"))
    runs = bench.full_cases(Path("/m/diffusers/../full.safetensors"), Path("/d"), Path("/r"),
                            [256, 512], 5, ["fp32", "bf16"], peer, Path("/tok"))
    variants = [(case, variant) for case, variant, _argv, _cwd in runs]
    assert len(runs) == 2 * (1 + 2 * 2 * 2)
    for i, (case, variant) in enumerate(variants):
        if variant.startswith("sd-scripts"):
            assert variants[i + 1] == (case, "ours" + variant.removeprefix("sd-scripts"))
            sds_argv, ours_argv = _no_output(runs[i][2]), _no_output(runs[i + 1][2])
            flags = ours_argv[4:]  # after `secure-trainer train --progress-every 1`
            assert sds_argv[2:2 + len(flags)] == flags
    assert not any(v.startswith("sd-scripts") for _c, v, _a, _w in bench.full_cases(
        Path("/m/full.safetensors"), Path("/d"), Path("/r"), [256], 5, ["fp32"], None, None))


def test_tqdm_redraws_become_step_lines() -> None:
    raw = (b"caching: 100%|##| 12/12 [00:01<00:00]\r\nsteps:   0%|  | 0/3 [00:00<?]\r"
           b"steps:  33%|#  | 1/3 [00:04<00:08, avr_loss=0.1]\rsteps:  67%|## | 2/3 [00:08<00:04]\n"
           b"step 3/3 loss 0.1\n")
    lines = list(bench._lines(io.BufferedReader(io.BytesIO(raw))))
    steps = [int(m.group(1)) for m in (bench.TQDM_STEP.match(x) or bench.STEP_LINE.match(x)
                                       for x in lines) if m]
    assert steps == [0, 1, 2, 3]


def test_table_pairs_our_variants_with_sd_scripts_and_the_bare_loop() -> None:
    m = bench.Measurement
    rows = [m("c", "bare", 5, 10.0, 2**30, 1, 1), m("c", "sd-scripts fp32", 5, 8.0, 2**31, 1, 1),
            m("c", "ours fp32", 5, 6.0, 2**30, 1, 1),
            m("c", "sd-scripts bf16 --cache_latents", 5, 4.0, 2**30, 1, 1),
            m("c", "ours bf16 --cache_latents", 5, 3.0, 2**30, 1, 1)]
    lines = bench.table(rows).splitlines()
    ours_fp32 = next(x for x in lines if "| ours fp32 |" in x).split("|")
    assert ours_fp32[4].strip() == "0.60" and ours_fp32[5].strip() == "0.75"
    assert ours_fp32[7].strip() == "0.50"
    ours_bf16 = next(x for x in lines if "| ours bf16 --cache_latents |" in x).split("|")
    assert ours_bf16[4].strip() == "-" and ours_bf16[5].strip() == "0.75"


def test_glibc_row_reruns_ours_fp32_on_the_system_allocator() -> None:
    runs = bench.full_cases(Path("/m/full.safetensors"), Path("/d"), Path("/r"), [256], 5,
                            ["fp32", "bf16"], None, None, glibc=True)
    glibc = [(v, a) for _c, v, a, _w in runs if v.endswith(bench.GLIBC)]
    assert [v for v, _a in glibc] == ["ours fp32" + bench.GLIBC]
    ours = next(a for _c, v, a, _w in runs if v == "ours fp32")
    assert glibc[0][1] == ["env", "ST_ALLOCATOR=system", *ours]
    m = bench.Measurement
    rows = [m("c", "bare", 5, 10.0, 2**30, 1, 1), m("c", "sd-scripts fp32", 5, 8.0, 2**31, 1, 1),
            m("c", "ours fp32" + bench.GLIBC, 5, 9.0, 2**30, 1, 1)]
    line = next(x for x in bench.table(rows).splitlines() if bench.GLIBC in x).split("|")
    assert line[4].strip() == "0.90" and line[5].strip() == "1.12"
