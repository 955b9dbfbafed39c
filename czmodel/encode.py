"""Builders for encoding trees (re-exported from ``czmodel.codecs``).

Example: a pruned, weight-shared matrix in Deep Compression's format::

    from czmodel import encode as E
    node = E.relidx(mask, E.codebook(indices, centroids, bits=5), gap_bits=4)
    czmodel.write("m.cz", {"fc1.weight": node})
"""

from czmodel.codecs import (  # noqa: F401
    Node,
    Stream,
    affine,
    block,
    codebook,
    dense,
    nm,
    relidx,
    sum_,
    svd,
    tucker2,
)

__all__ = ["Node", "Stream", "affine", "block", "codebook", "dense", "nm", "relidx", "sum_",
           "svd", "tucker2"]
