import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
pytest_plugins = ["pytester"]


import pytest  # noqa: E402
import torch  # noqa: E402
from tiny_models import tiny_gpt2, tiny_llama, tiny_qwen2  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one torch thread: on tiny tensors intra-op threads only add wake-up latency."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


@pytest.fixture(scope="module")
def gpt2():
    return tiny_gpt2()


@pytest.fixture(scope="module")
def qwen2():
    return tiny_qwen2()
