"""Exact file sizes of many plans without running the compression step each time.

The profile's size model is additive (fixed bytes + each layer's marginal bytes) and off by
section alignment and header integer widths (about +-150 bytes on LeNet-5). ``FileSizer``
is exact: it writes the as-is file once through the real compression step, keeps its
header (graph, metadata, tensor order and dtypes), and for a plan rebuilds the file bytes
from the layers' cached encoding trees with the same writer -- byte-identical to what
``cz compress --config`` writes (a test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .space import Candidate, build_config, compress_candidate


class FileSizer:
    def __init__(self, model: Any) -> None:
        import czmodel

        self.model = model
        raw = model.compressed_bytes(build_config({k: Candidate("fp32", None)
                                                   for k in model.weights}))
        with czmodel.open(raw) as f:
            self.order = list(f)
            self.dtypes = {k: f.entry(k).dtype for k in self.order}
            g = f.graph
            self.graph = g if isinstance(g, dict) or g is None else g.to_header()
            self.metadata = dict(f.metadata)
            self.calibration = dict(getattr(f, "calibration", None) or {})
        self._nodes: dict[tuple[str, str], Any] = {}

    def node(self, name: str, cand: Candidate) -> Any:
        key = (name, cand.label)
        if key not in self._nodes:
            m = self.model
            c = compress_candidate(name, m.tensors[name], m.weights[name], cand)
            self._nodes[key] = c.node if c.node is not None else np.asarray(m.tensors[name])
        return self._nodes[key]

    def file_bytes(self, choice: Mapping[str, Candidate]) -> bytes:
        from czmodel.format.writer import build_file

        tensors = {k: (self.node(k, choice[k]) if k in choice else self.model.tensors[k])
                   for k in self.order}
        return build_file(tensors, graph=self.graph, metadata=self.metadata,
                          tensor_dtypes=self.dtypes, calibration=self.calibration or None)

    def size(self, choice: Mapping[str, Candidate]) -> int:
        return len(self.file_bytes(choice))
