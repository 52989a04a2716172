"""A literate, reproducible implementation of Stable Code 3B and Stable Code Instruct 3B: data, model, staged pretraining, alignment, evaluation and quantization, as nbdev notebooks.

Modules:

- `stablecode.benchmarks`: The evaluation benchmarks as `Problem` objects, read from their real formats: HumanEval(+), MBPP(+), MultiPL-E and SantaCoder's FIM task; and `exercises`, a generated family of small Python problems that the tiny model can learn.
- `stablecode.data`: The pretraining corpus: where the documents come from, how they are mixed, and how they are cleaned — quality filters, exact and near deduplication, benchmark decontamination — as datatrove pipelines.
- `stablecode.dpo`: Stable Code Instruct 3B's second alignment step: Direct Preference Optimization on TRL's `DPOTrainer`, starting from the SFT model, which is also the frozen reference. Beside the report's preference data, the chapter builds pairs a code model can check for itself: several answers sampled from the SFT model, each run in the sandbox against the problem's tests, ranked by outcome, the best paired with a worse one.
- `stablecode.evidence`: Three measurements that check the pretraining stages do what the report says: learning from context, long context, and fill-in-the-middle.
- `stablecode.generate`: One way to generate text for everything above the model: evaluation, preference pairs, self-alignment, ranking feedback and quantization all sample through the backends of this chapter.
- `stablecode.instruct_data`: The data of Stable Code Instruct 3B: instruction conversations (OpenHermes, Code Feedback, CodeAlpaca) for supervised fine-tuning and preference pairs (code-related UltraFeedback and Capybara, harmless HH-RLHF) for DPO, read from their real hub schemas into one conversation format, filtered, decontaminated, weighted and mixed; plus the offline instruction set the tiny CPU run trains on.
- `stablecode.quantize`: GGUF through llama.cpp's own converter and quantizer, CTranslate2 int8 through our StableLM loader, torchao int8/int4 weight-only in PyTorch; every format loads in its own runtime, generates through the generation module's `Backend` interface, and is measured in one table of size, memory, speed and quality against fp32 PyTorch.
- `stablecode.quickstart`: `stablecode quickstart`: a small data build, a few optimizer steps of the tiny model through the real trainer, a checkpoint stock transformers loads, and a greedy sample, in about a minute on two CPU cores.
- `stablecode.sft`: Stable Code Instruct 3B's first alignment step: the base model fine-tuned on conversations in ChatML with TRL's `SFTTrainer`, packed, with the loss on the assistant's tokens only, on DeepSpeed ZeRO-1 at full scale and on one or two CPU processes here. The recipe's values are the report's; what it leaves unsaid is named and made a parameter."""

__version__ = "0.0.1"
