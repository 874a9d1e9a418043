"""Shared fixtures: tiny real-architecture models built once per test session, real PNG images."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from rlvprm.models.tiny import ARCHES, build_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the test machines share their cores. A module
    takes it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folder of a tiny model per architecture, built lazily."""
    root = tmp_path_factory.mktemp("tiny")
    built: dict[str, str] = {}

    def get(arch: str) -> str:
        if arch not in built:
            built[arch] = str(build_tiny_model(arch, root / arch, seed=0))
        return built[arch]

    return get


@pytest.fixture(scope="session")
def remote_internvl():
    """``build_remote_internvl`` of ``tests/rewards/backends/remote_internvl_fixture.py``: a tiny
    InternVL remote-code checkpoint writer (loaded by path: the tests are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "rewards" / "backends" / "remote_internvl_fixture.py"
    spec = importlib.util.spec_from_file_location("remote_internvl_fixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_remote_internvl


@pytest.fixture(params=ARCHES)
def arch(request):
    return request.param


def digit_image(text: str, size=(84, 28), color="black") -> Image.Image:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((4, 8), text, fill=color)
    return img


@pytest.fixture
def images():
    return [digit_image("3 7 5"), digit_image("8 1 2", color="red")]


@pytest.fixture
def free_port():
    """A function giving a free local TCP port, for the rendezvous of spawned gloo processes."""
    import socket

    def get() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return get


@pytest.fixture
def kill_part_way():
    """Run a command line in a subprocess and SIGKILL it once ``out`` holds ``lines`` lines.

    Returns the number of lines the killed run left; the caller re-runs the command to resume.
    """
    import signal
    import subprocess
    import time
    from pathlib import Path

    def run(cmd: list[str], out: Path, lines: int, timeout: float = 240.0) -> int:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if Path(out).exists() and len(Path(out).read_bytes().splitlines()) >= lines:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return len(Path(out).read_bytes().splitlines()) if Path(out).exists() else 0

    return run
