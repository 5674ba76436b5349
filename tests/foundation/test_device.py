import torch

from r1mega.device import cuda_device_or_none, device


def test_device_is_the_current_cuda_device_or_the_cpu():
    if torch.cuda.is_available():
        assert device() == cuda_device_or_none() == torch.device("cuda", torch.cuda.current_device())
    else:
        assert device() == torch.device("cpu") and cuda_device_or_none() is None
