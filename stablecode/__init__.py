"""A literate, reproducible implementation of Stable Code 3B and Stable Code Instruct 3B: data, model, staged pretraining, alignment, evaluation and quantization, as nbdev notebooks.

Modules:

- `stablecode.data`: The pretraining corpus: where the documents come from, how they are mixed, and how they are cleaned — quality filters, exact and near deduplication, benchmark decontamination — as datatrove pipelines."""

__version__ = "0.0.1"
