"""``sum``: the element-wise float32 sum of 1..16 children of the node's shape, e.g. a
low-rank term plus a sparse correction."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from czmodel.codecs import _util as U
from czmodel.codecs.base import Codec, DecodeContext, Node, NodeDesc, register
from czmodel.errors import CorruptionError, EncodeError, FormatError

MAX_TERMS = 16


@register
class Sum(Codec):
    name = "sum"
    child_roles = ()
    # The container's generic check accepts, for a codec with variadic_children = True,
    # exactly the children "0", "1", ..., "n-1" (contiguous, n >= 1) instead of
    # matching them against child_roles.
    variadic_children: ClassVar[bool] = True

    def check(self, node: NodeDesc) -> None:
        n = len(node.children)
        if not 1 <= n <= MAX_TERMS or set(node.children) != {str(i) for i in range(n)}:
            raise FormatError(f"sum: children must be named '0'..'n-1' with 1 <= n <= "
                              f"{MAX_TERMS}, got {sorted(node.children)}", path=node.path)
        for i in range(n):
            c = node.children[str(i)]
            if c.shape != node.shape:
                raise CorruptionError(f"sum: child {str(i)!r} has shape {list(c.shape)}, "
                                      f"expected {list(node.shape)}", path=c.path)

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        # Reference and fast path are the same: float32 additions in index order are exact
        # IEEE operations, so any decoder that follows the order agrees bit for bit.
        acc = np.array(U.child_f32(ctx, node, "0"), dtype=np.float32, copy=True)
        for i in range(1, len(node.children)):
            with np.errstate(all="ignore"):   # inf + -inf = nan is a value, not a fault
                acc += U.child_f32(ctx, node, str(i))
        return acc


def sum_(*terms: Node) -> Node:
    """Element-wise sum of 1..16 nodes of equal shape (decoded in float32, in order)."""
    if not 1 <= len(terms) <= MAX_TERMS:
        raise EncodeError(f"sum: needs 1..{MAX_TERMS} terms, got {len(terms)}")
    nodes = [U.need_node(t, f"sum: term {i}") for i, t in enumerate(terms)]
    shape = tuple(nodes[0].shape)
    for i, t in enumerate(nodes):
        if tuple(t.shape) != shape:
            raise EncodeError(f"sum: term {i} has shape {list(t.shape)}, expected {list(shape)}")
    return Node("sum", shape, {}, {}, {str(i): t for i, t in enumerate(nodes)})


add = sum_
