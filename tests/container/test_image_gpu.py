"""The GPU image (`make build`: CUDA torch from requirements/lock-gpu.txt) on a machine without a GPU.

A CUDA build of torch runs on the CPU, so the GPU image is checked here: its CLI starts, torch is
the CUDA build (not +cpu) and sees no device, the policy's `gpu` facts read 0 devices / no CUDA
and `gpu.torch_sees_cuda` passes, and a tiny model trains on the CPU inside it with the
production user (10001). The image is `ST_GPU_IMAGE` or `secure-trainer:gpu`; building it takes
~3 GB of CUDA wheels and several minutes, so without one these tests skip (marker `gpu`).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.container.support import docker

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(scope="module")
def gpu_image(docker_engine: None) -> str:
    """The GPU image's tag; skip when none is built (it is never built implicitly)."""
    tag = os.environ.get("ST_GPU_IMAGE") or "secure-trainer:gpu"
    if docker("image", "inspect", tag, check=False).returncode != 0:
        pytest.skip(f"no GPU image {tag}: run `make build` (or set ST_GPU_IMAGE)")
    return tag


def test_cli_starts_and_torch_is_the_cuda_build(gpu_image: str) -> None:
    assert b"train-llm" in docker("run", "--rm", "--network", "none", gpu_image, "--help").stdout
    probe = ("import json, torch; print(json.dumps({'version': torch.__version__, "
             "'cuda': torch.version.cuda, 'available': torch.cuda.is_available()}))")
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
                 gpu_image, "-c", probe, timeout=300).stdout
    facts = json.loads(out.decode().strip().splitlines()[-1])
    assert "+cpu" not in facts["version"] and facts["cuda"], facts
    assert facts["available"] is False


def test_policy_gpu_facts_without_a_device(gpu_image: str) -> None:
    proc = docker("run", "--rm", "--network", "none", "--user", "0:0", gpu_image,
                  "policy", "check", "--policy", "dev", "--json", timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    record = json.loads(proc.stdout)
    assert record["facts"]["gpu"] == {"devices": 0, "driver_version": None, "torch_cuda": False}
    gpu_rules = {r["id"]: r["result"] for r in record["rules"] if r["id"].startswith("gpu.")}
    assert gpu_rules == {"gpu.torch_sees_cuda": "pass"}


def test_tiny_train_on_cpu_inside_the_gpu_image(gpu_image: str) -> None:
    script = ("set -e; secure-trainer dev tiny-model /tmp/m >/dev/null; "
              "secure-trainer dev dataset /tmp/d >/dev/null; "
              "secure-trainer train --pretrained_model_name_or_path /tmp/m/diffusers "
              "--train_data_dir /tmp/d --caption_extension .txt --resolution 64 --network_dim 4 "
              "--network_alpha 4 --learning_rate 1e-3 --train_batch_size 2 --seed 1 "
              "--max_train_steps 2 --output_dir /tmp/out --output_name lora; "
              "/opt/venv/bin/python -c \"from safetensors import safe_open; "
              "print(len(list(safe_open('/tmp/out/lora.safetensors', 'pt').keys())))\"")
    proc = docker("run", "--rm", "--network", "none", "--read-only",
                  "--tmpfs", "/tmp:rw,nosuid", "--entrypoint", "/bin/sh", gpu_image, "-c", script,
                  timeout=900, check=False)
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, out[-3000:]
    assert "trained 2 steps" in out and "saved lora.safetensors" in out
    assert int(proc.stdout.decode().strip().splitlines()[-1]) > 0
