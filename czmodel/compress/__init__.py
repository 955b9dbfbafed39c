"""Framework-free compression algorithms on numpy arrays.

Pruning masks, k-means weight sharing, special codebooks, fixed point / minifloat,
affine quantization, outlier-aware quantization, activation calibration, low-rank
factorizations and the configuration schema. Nothing here imports torch or onnx;
turning a ``LayerSpec`` into the file's encoding tree is the pipeline's job.
"""

from .affine import dequantize_affine, quantize_affine
from .calibrate import (
    ActivationRange,
    HistogramCalibrator,
    entropy,
    kl_threshold_bin,
    minmax,
    percentile,
)
from .config import CompressionConfig, LayerSpec, deep_compression_default
from .fixedpoint import dequantize_fixed, dynamic_fixed_point, minifloat, minifloat_max
from .kmeans import decode_shared, kmeans_1d, share_weights
from .lowrank import svd, tucker2, tucker2_reconstruct, vbmf_rank
from .outlier import OutlierQuantized, outlier_quantize, split_outliers
from .prune import (
    drop_input_channels,
    global_magnitude_masks,
    han_mask,
    magnitude_mask,
    nm_mask,
    shrink_filters,
)
from .special import binary, pow2, ternary

__all__ = [
    "magnitude_mask", "han_mask", "nm_mask", "global_magnitude_masks", "shrink_filters",
    "drop_input_channels",
    "kmeans_1d", "share_weights", "decode_shared",
    "binary", "ternary", "pow2",
    "dynamic_fixed_point", "dequantize_fixed", "minifloat", "minifloat_max",
    "quantize_affine", "dequantize_affine",
    "split_outliers", "outlier_quantize", "OutlierQuantized",
    "minmax", "percentile", "entropy", "kl_threshold_bin", "HistogramCalibrator",
    "ActivationRange",
    "svd", "tucker2", "tucker2_reconstruct", "vbmf_rank",
    "CompressionConfig", "LayerSpec", "deep_compression_default",
]
