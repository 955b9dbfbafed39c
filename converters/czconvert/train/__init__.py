"""Training-time compression in PyTorch (the only czmodel code that trains).

* ``loop``: a seeded training loop with progress bars, hooks and distillation;
* ``prune``: iterative magnitude pruning with retraining, masks held through optimizer steps;
* ``quantize``: Deep Compression's trained quantization (k-means, then fine-tuned centroids);
* ``qat``: quantization-aware fine-tuning (int8, binary, ternary) with a straight-through
  estimator;
* ``distill``: the knowledge-distillation loss (Hinton et al.);
* ``export``: write the trained, compressed network to a .cz file keeping the trained
  codebooks exactly.
"""

from .distill import kd_loss
from .loop import evaluate, predict, seed_everything, train
from .prune import Pruner, iterative_prune, keep_schedule, magnitude_masks, regularization
from .qat import finalize_qat, prepare_qat
from .quantize import TrainedQuantizer

__all__ = ["kd_loss", "evaluate", "predict", "seed_everything", "train", "Pruner",
           "iterative_prune", "keep_schedule", "magnitude_masks", "regularization",
           "prepare_qat", "finalize_qat", "TrainedQuantizer"]
