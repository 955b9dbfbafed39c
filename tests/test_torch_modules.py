"""czconvert.torch_modules.compress_module: Linear / Conv2d swapped for modules that run the
Numba kernels on the compressed forms; outputs vs torch on the decompressed weights."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch import nn

import czmodel
from czconvert.torch_modules import CzConv2d, CzLinear, compress_module, module_bytes


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 96), nn.ReLU(),
                         nn.Linear(96, 10)).eval()


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def lenet() -> nn.Module:
    torch.manual_seed(1)
    return LeNet5().eval()


CONFIGS = {
    "kmeans4_per_channel": {"default": {"quantize": {"method": "kmeans", "bits": 4,
                                                     "per_channel": True}}},
    "kmeans5_tensor": {"default": {"quantize": {"method": "kmeans", "bits": 5},
                                   "entropy": "huffman"}},
    "prune70_kmeans6": {"default": {"prune": {"sparsity": 0.7},
                                    "quantize": {"method": "kmeans", "bits": 6}}},
    "prune50_f32": {"default": {"prune": {"sparsity": 0.5}}},
    "svd": {"default": {"lowrank": {"method": "svd", "rank": 8}}},
}


def decompressed_reference(original: nn.Module, compressed: nn.Module) -> nn.Module:
    """``original`` with every swapped layer's weight replaced by its decoded value."""
    ref = copy.deepcopy(original)
    for path, m in compressed.named_modules():
        if isinstance(m, (CzLinear, CzConv2d)):
            with czmodel.open(m.cz_data.numpy().tobytes()) as f:
                w = np.array(f[m.cz_name])
            ref.get_submodule(path).weight.data = torch.from_numpy(w)
    return ref


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("make,shape", [(mlp, (5, 64)), (lenet, (3, 1, 28, 28))],
                         ids=["mlp", "lenet5"])
def test_matches_decompressed_torch(make, shape, cfg):
    model = make()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    cm = compress_module(copy.deepcopy(model), CONFIGS[cfg])
    n_layers = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())
    assert len(cm.cz_swapped) == n_layers
    assert not any(type(m) in (nn.Linear, nn.Conv2d) for m in cm.modules())
    with torch.no_grad():
        got = cm(x)
        want = decompressed_reference(model, cm)(x)
        orig = model(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4, rtol=0)
    assert not torch.allclose(got, orig)            # it really is compressed
    sizes = module_bytes(cm)
    fp32 = sum(t.numel() * 4 for t in model.state_dict().values())
    assert sizes["cz_weights_fp32"] == fp32
    if cfg != "prune50_f32":
        assert sizes["state_dict"] < fp32 / 2
        assert sizes["cz_weights_resident"] < fp32


def test_affine_int8_close():
    model = lenet()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    cm = compress_module(copy.deepcopy(model), {"default": {"quantize": {
        "method": "affine", "bits": 8, "per_channel": True}}})
    assert "affine" in cm.features[0].encoding
    with torch.no_grad():
        got = cm(x)
        want = decompressed_reference(model, cm)(x)
    # int8 kernels quantize activations dynamically per row
    assert float((got - want).abs().max()) < 2e-2 * float(want.abs().max())


def test_config_selects_layers_and_op_types():
    model = lenet()
    cm = compress_module(model, {"default": {"quantize": None},
                                 "op_types": {"Conv2d": {"quantize": {"method": "kmeans",
                                                                      "bits": 4}}},
                                 "layers": {"features.3.weight": None}})
    assert cm is model and cm.cz_swapped == ["features.0"]
    assert isinstance(cm.features[0], CzConv2d) and type(cm.features[3]) is nn.Conv2d
    assert all(type(m) is nn.Linear for m in cm.classifier if isinstance(m, nn.Linear))
    # "Conv" in op_types (ONNX spelling) also applies to nn.Conv2d
    cm2 = compress_module(lenet(), {"default": {},
                                    "op_types": {"Conv": {"quantize": {"method": "kmeans",
                                                                       "bits": 4}}}})
    assert cm2.cz_swapped == ["features.0", "features.3"]


def test_inference_only():
    cm = compress_module(mlp(), CONFIGS["kmeans4_per_channel"])
    x = torch.randn(2, 64, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference only"):
        cm(x)
    with torch.no_grad():
        assert cm(x).shape == (2, 10)
    assert list(cm.parameters()) == []


def test_state_dict_round_trip_and_shapes():
    model = lenet()
    cm = compress_module(copy.deepcopy(model), CONFIGS["prune70_kmeans6"])
    buf = io.BytesIO()
    torch.save(cm.state_dict(), buf)
    other = compress_module(copy.deepcopy(model), CONFIGS["kmeans4_per_channel"])
    other.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    x = torch.randn(2, 1, 28, 28)
    with torch.inference_mode():
        np.testing.assert_array_equal(other(x).numpy(), cm(x).numpy())
        # unbatched conv input and extra leading dims for Linear
        assert cm.features[0](x[0]).shape == (6, 28, 28)
        assert cm.classifier[1](torch.randn(2, 3, 400)).shape == (2, 3, 120)


def test_conv_padding_same_and_groups():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding="same", groups=4, bias=False),
                          nn.Conv2d(8, 16, (3, 2), stride=2, dilation=(2, 1), padding=(1, 0)))
    cm = compress_module(copy.deepcopy(model), CONFIGS["kmeans5_tensor"])
    x = torch.randn(2, 8, 11, 10)
    with torch.no_grad():
        np.testing.assert_allclose(cm(x).numpy(), decompressed_reference(model, cm)(x).numpy(),
                                   atol=1e-4)
