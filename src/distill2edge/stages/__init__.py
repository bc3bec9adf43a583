"""The recipe's stages, one module each, in the order `distill2edge.pipeline` runs them:

- `data`: the recipe's examples split into train/validation/test (and a distillation's own data);
- `student`: `student_init`, the student cut from a same-family model, and its starting answer CE;
- `sft`: `sft_teacher.NAME` and `sft_student`, supervised fine-tuning on the answers;
- `teacher_data`: extra training examples the SFT teacher writes about the training contexts;
- `distill`: `distill.NAME`, one distillation each (any registered algorithm);
- `evaluate`, `export`, `bench`: the output stages, on the main process after training.

Each stage function takes the run's `context.Context` (recipe, run folder, data, models made so far),
runs its work through `Run.stage` (content-keyed, reused when done, resumed when killed) and records the
model it makes in the context. The trainers they call live in `distill2edge.train.trainers`.
"""
