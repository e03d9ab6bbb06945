import pytest
import torch


@pytest.fixture(
    scope="session",
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
            ],
        ),
    ],
)
def warp_device(request) -> str:
    """The Warp device a MuJoCo Warp test runs on: Warp's CPU device always, and CUDA
    (CUDA graphs, the GPU's float32 kernels) where a GPU is present."""
    return request.param
