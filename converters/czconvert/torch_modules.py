"""PyTorch modules that run straight from czmodel's compressed kernel forms (inference only).

``compress_module(module, config) -> module`` replaces, in place, every ``nn.Linear`` and
``nn.Conv2d`` whose weight ``config`` compresses by a ``CzLinear`` / ``CzConv2d``. Such a
module keeps

* ``cz_data``: a uint8 buffer holding a one-tensor in-memory ``.cz`` file (the compressed
  weight, exactly as ``czmodel.save`` would write it) -- this is what ``state_dict()`` saves;
* ``form``: the kernel form built from it (``czmodel.runtime.forms``: codebook indices + LUT,
  relidx gaps, int8 values + scales, ...); ``forward`` runs czmodel's Numba kernels
  (``czmodel.runtime.numba_kernels.matmul`` / ``conv2d``) on it, never a dense float copy
  (except where the Numba backend itself falls back: see ``form.describe()``);
* ``bias``: a float32 buffer (stored as is).

Config resolution is the one of ``CompressionConfig.resolve(name, op_type)`` with
``name = "<module path>.weight"`` and ``op_type`` ``"Linear"`` for ``nn.Linear`` and
``"Conv2d"`` (or ``"Conv"`` when the config has an ``op_types["Conv"]`` entry and no
``"Conv2d"`` one) for ``nn.Conv2d``; a weight resolving to None, or to a spec with no
prune / quantize / lowrank section, is left alone.

Inference only: the modules hold no parameters; calling one with an input that requires
grad while autograd is on raises ``RuntimeError``. Affine (int8/int4) forms run the int8
kernels with dynamic per-row activation quantization (outputs differ from float math by
~1e-2 relative); codebook (k-means) and sparse forms compute in float32.

``module_bytes(module)`` reports the fp32 state-dict bytes of the swapped weights, the
compressed ``state_dict`` bytes and the resident bytes of the forms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from czmodel.errors import EncodeError, UnsupportedError
from czmodel.progress import progress

__all__ = ["compress_module", "CzLinear", "CzConv2d", "module_bytes"]


def _no_grad_check(x: torch.Tensor, who: str) -> None:
    if torch.is_grad_enabled() and x.requires_grad:
        raise RuntimeError(f"{who} is inference only: its compressed weight has no gradient. "
                           "Run it under torch.no_grad() / torch.inference_mode(), or detach "
                           "the input.")


def _encode(name: str, w: np.ndarray, spec: Any, op_type: str) -> bytes:
    from czmodel.compress.pipeline import compress_tensor
    from czmodel.format.writer import build_file

    res = compress_tensor(name, w, spec, op_type)
    return build_file({name: res.node}, tensor_dtypes={name: "f32"})


def _build_form(data: bytes, name: str, groups: int):
    import czmodel
    from czmodel.runtime import forms as F

    log = F.BuildLog()
    with czmodel.open(data) as f:
        form = F.build_form(f, name, log, conv_groups=groups)
    return form


class _CzBase(nn.Module):
    _op = "?"

    def _setup(self, data: bytes, name: str, bias: torch.Tensor | None, groups: int) -> None:
        self.cz_name = name
        self.groups_for_form = groups
        self.register_buffer("cz_data", torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self.register_buffer("bias", None if bias is None else
                             bias.detach().to(torch.float32).cpu().clone())
        self.form = _build_form(data, name, groups)

    def _bias_np(self) -> np.ndarray | None:
        return None if self.bias is None else self.bias.numpy()

    @property
    def resident_bytes(self) -> int:
        """Bytes the kernels run from: the form's arrays plus the bias."""
        return int(self.form.resident_bytes) + (0 if self.bias is None
                                                 else self.bias.numel() * 4)

    @property
    def encoding(self) -> str:
        return self.form.describe()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "cz_data"
        if key in state_dict:       # another encoding may have another byte count
            data = state_dict[key].detach().cpu().to(torch.uint8).contiguous()
            self.form = _build_form(data.numpy().tobytes(), self.cz_name, self.groups_for_form)
            self.cz_data = torch.empty_like(data)     # resized; the base class copies into it
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @staticmethod
    def _numpy_in(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().to(torch.float32).cpu().numpy())


class CzLinear(_CzBase):
    """``nn.Linear`` from a compressed weight (see the module docstring)."""

    _op = "Linear"

    def __init__(self, in_features: int, out_features: int, data: bytes, name: str,
                 bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._setup(data, name, bias, 1)

    @classmethod
    def from_linear(cls, lin: nn.Linear, spec: Any, name: str = "weight",
                    op_type: str = "Linear") -> CzLinear:
        w = lin.weight.detach().to(torch.float32).cpu().numpy()
        return cls(lin.in_features, lin.out_features, _encode(name, w, spec, op_type), name,
                   lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from czmodel.runtime import numba_kernels as K

        _no_grad_check(x, "CzLinear")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"CzLinear: input last dim {x.shape[-1]} != in_features "
                             f"{self.in_features}")
        xn = self._numpy_in(x).reshape(-1, self.in_features)
        y = np.array(K.matmul(self.form, xn), dtype=np.float32, order="C")
        if self.bias is not None:
            y += self._bias_np()
        out = torch.from_numpy(y.reshape(tuple(x.shape[:-1]) + (self.out_features,)))
        return out.to(device=x.device, dtype=x.dtype if x.is_floating_point() else None)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, form={self.encoding}")


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class CzConv2d(_CzBase):
    """``nn.Conv2d`` (padding_mode="zeros") from a compressed weight."""

    _op = "Conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any,
                 padding: Any, dilation: Any, groups: int, data: bytes, name: str,
                 bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.dilation, self.groups = _pair(dilation), int(groups)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise UnsupportedError(f"CzConv2d: padding={padding!r}")
            self.padding = padding
        else:
            self.padding = _pair(padding)
        self._setup(data, name, bias, self.groups)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, spec: Any, name: str = "weight",
                  op_type: str = "Conv2d") -> CzConv2d:
        if conv.padding_mode != "zeros":
            raise UnsupportedError(f"CzConv2d: padding_mode={conv.padding_mode!r} (only "
                                   "'zeros')")
        w = conv.weight.detach().to(torch.float32).cpu().numpy()
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                   conv.padding, conv.dilation, conv.groups, _encode(name, w, spec, op_type),
                   name, conv.bias)

    def _pads(self) -> list[int]:
        if self.padding == "valid":
            return [0, 0, 0, 0]
        if self.padding == "same":     # torch: the extra pixel goes to the end
            tot = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            return [tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2]
        ph, pw = self.padding
        return [ph, pw, ph, pw]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from czmodel.runtime import numba_kernels as K

        _no_grad_check(x, "CzConv2d")
        squeeze = x.dim() == 3
        if squeeze:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"CzConv2d: expected (N, {self.in_channels}, H, W), got "
                             f"{list(x.shape)}")
        y = K.conv2d(self.form, self._numpy_in(x), self._bias_np(), self.kernel_size,
                     self.stride, self._pads(), self.dilation, self.groups)
        out = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        out = out.to(device=x.device, dtype=x.dtype)
        return out[0] if squeeze else out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}, form={self.encoding}")


def _conv_op(cfg: Any) -> str:
    ops = getattr(cfg, "op_types", {}) or {}
    return "Conv" if ("Conv" in ops and "Conv2d" not in ops) else "Conv2d"


def _compresses(spec: Any) -> bool:
    """A spec that prunes, quantizes or factorizes (entropy coding alone keeps fp32 math)."""
    return spec is not None and any((spec.prune, spec.quantize, spec.lowrank))


def compress_module(module: nn.Module, config: Any, *, inplace: bool = True) -> nn.Module:
    """Swap every ``nn.Linear`` / ``nn.Conv2d`` of ``module`` whose ``<path>.weight`` the
    ``config`` (dict, JSON/YAML path or ``CompressionConfig``) compresses for a ``CzLinear`` /
    ``CzConv2d``. Returns the module (a deep copy first when ``inplace=False``); it is put in
    eval mode. The names of the swapped modules are in ``module.cz_swapped`` (a list)."""
    import copy

    from czmodel.compress.pipeline import _as_config

    if not isinstance(module, nn.Module):
        raise TypeError(f"compress_module needs an nn.Module, got {type(module).__name__}")
    cfg = _as_config(config)
    if cfg is None:
        raise EncodeError("compress_module: config is None (nothing to compress)")
    if not inplace:
        module = copy.deepcopy(module)
    root_linear = isinstance(module, (nn.Linear, nn.Conv2d))
    if root_linear:
        raise UnsupportedError("compress_module: wrap a bare nn.Linear / nn.Conv2d in a "
                               "container (it cannot replace itself in place)")
    swapped: list[str] = []
    conv_op = _conv_op(cfg)
    layers = [(path, child) for path, child in module.named_modules()
              if type(child) in (nn.Linear, nn.Conv2d)]
    with progress(layers, total=len(layers), desc="compressing modules") as bar:
        for path, child in bar:
            bar.set_postfix_str(path)
            wname = f"{path}.weight"
            if isinstance(child, nn.Linear):
                spec = cfg.resolve(wname, "Linear")
                if not _compresses(spec):
                    continue
                new: nn.Module = CzLinear.from_linear(child, spec, wname, "Linear")
            else:
                spec = cfg.resolve(wname, conv_op)
                if not _compresses(spec):
                    continue
                new = CzConv2d.from_conv(child, spec, wname, conv_op)
            parent_path, _, attr = path.rpartition(".")
            parent = module.get_submodule(parent_path) if parent_path else module
            setattr(parent, attr, new)
            swapped.append(path)
    module.cz_swapped = swapped
    return module.eval()


def module_bytes(module: nn.Module) -> dict[str, int]:
    """Sizes of a (compressed) module, in bytes:

    * ``state_dict``: every tensor of ``module.state_dict()`` (compressed weights as their
      ``.cz`` bytes);
    * ``resident``: what inference keeps in memory -- the forms' arrays of the Cz modules
      plus every other parameter / buffer (the ``cz_data`` buffers excluded: they are only
      needed to save the module);
    * ``cz_weights_fp32`` / ``cz_weights_state_dict`` / ``cz_weights_resident``: the same
      restricted to the swapped layers (weights + biases; fp32 = the original layers)."""
    sd = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    resident = 0
    fp32 = cz_sd = cz_res = 0
    for m in module.modules():
        if isinstance(m, _CzBase):
            shape = getattr(m.form, "shape", (m.form.rows, m.form.cols))
            nb = 0 if m.bias is None else m.bias.numel() * 4
            fp32 += 4 * int(np.prod(shape)) + nb
            cz_sd += m.cz_data.numel() + nb
            cz_res += m.resident_bytes
            resident += m.resident_bytes
        else:
            for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
                resident += t.numel() * t.element_size()
    return {"state_dict": int(sd), "resident": int(resident), "cz_weights_fp32": int(fp32),
            "cz_weights_state_dict": int(cz_sd), "cz_weights_resident": int(cz_res)}
