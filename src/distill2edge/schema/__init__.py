"""The typed recipe schema: one module per recipe section, all validated by pydantic.

`distill2edge.config` re-exports every public name, so callers import from there; these modules hold
only the classes and their validators. Checks that need a registry (KD losses, export profiles) import
it inside the validator, so importing the schema loads no training or export code; the distillation
algorithms' names live in `schema.algorithms` (their builders in `train.algorithms` import the schema).
"""
