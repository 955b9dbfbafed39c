"""Tensor encodings. Importing this package fills ``REGISTRY`` with every codec.

``dense`` is imported first so that it is the first row of ``REGISTRY``.
"""

from czmodel.codecs.base import (
    REGISTRY,
    DecodeContext,
    Node,
    NodeDesc,
    Stream,
    StreamDesc,
    decode_node,
)
from czmodel.codecs.dense import dense

# isort: split
from czmodel.codecs.affine import affine
from czmodel.codecs.codebook import codebook
from czmodel.codecs.lowrank import svd, tucker2
from czmodel.codecs.relidx import choose_gap_bits, relidx, relidx_gaps
from czmodel.codecs.structured import block, nm
from czmodel.codecs.sum import add, sum_

__all__ = ["REGISTRY", "DecodeContext", "Node", "NodeDesc", "Stream", "StreamDesc",
           "decode_node", "dense", "affine", "codebook", "relidx", "relidx_gaps",
           "choose_gap_bits", "nm", "block", "svd", "tucker2", "sum_", "add"]
