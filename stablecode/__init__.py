"""A literate, reproducible implementation of Stable Code 3B and Stable Code Instruct 3B: data, model, staged pretraining, alignment, evaluation and quantization, as nbdev notebooks.

Modules:

- `stablecode.benchmarks`: The evaluation benchmarks as `Problem` objects, read from their real formats: HumanEval(+), MBPP(+), MultiPL-E and SantaCoder's FIM task; and `exercises`, a generated family of small Python problems that the tiny model can learn.
- `stablecode.data`: The pretraining corpus: where the documents come from, how they are mixed, and how they are cleaned — quality filters, exact and near deduplication, benchmark decontamination — as datatrove pipelines.
- `stablecode.evidence`: Three measurements that check the pretraining stages do what the report says: learning from context, long context, and fill-in-the-middle.
- `stablecode.generate`: One way to generate text for everything above the model: evaluation, preference pairs, self-alignment, ranking feedback and quantization all sample through the backends of this chapter.
- `stablecode.instruct_data`: The data of Stable Code Instruct 3B: instruction conversations (OpenHermes, Code Feedback, CodeAlpaca) for supervised fine-tuning and preference pairs (code-related UltraFeedback and Capybara, harmless HH-RLHF) for DPO, read from their real hub schemas into one conversation format, filtered, decontaminated, weighted and mixed; plus the offline instruction set the tiny CPU run trains on.
- `stablecode.quickstart`: `stablecode quickstart`: a small data build, a few optimizer steps of the tiny model through the real trainer, a checkpoint stock transformers loads, and a greedy sample, in about a minute on two CPU cores."""

__version__ = "0.0.1"
