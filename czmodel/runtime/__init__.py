"""Run whole models stored in .cz files (spec: ``spec/ops.md``).

``load(path, backend="reference")`` returns a ``Model`` with ``.inputs``, ``.outputs`` and
``.run(feeds)``. Backends: ``BACKENDS`` (reference numpy oracle; numba and C register too).
"""

from czmodel.runtime.executor import Backend, Executor, WeightForm
from czmodel.runtime.model import BACKENDS, Model, backend_class, load
from czmodel.runtime.reference import ReferenceBackend

__all__ = ["load", "Model", "Backend", "Executor", "WeightForm", "ReferenceBackend",
           "BACKENDS", "backend_class"]
