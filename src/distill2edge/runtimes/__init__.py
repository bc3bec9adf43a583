"""One layer per inference engine: how distill2edge opens a model in a runtime and reads it back.

- `runtimes.llamacpp`: a GGUF in llama.cpp (llama-cpp-python): opening it quietly, every position's
  logits, greedy continuations, the runtime's name. Used by the embedded-model conversion check, the
  GGUF export gate, the llama.cpp bench runner and the GGUF judge.
- `runtimes.onnx`: an optimum ONNX folder in onnxruntime (`ORTModelForCausalLM`) with explicit threads,
  provider and I/O binding. Used by the ONNX export gate and the ONNX bench runner.
- `runtimes.torch_lm`: teacher-forced logits and greedy ids of a transformers model, the reference side of
  every parity check. Loading a torch model is `models.loading.load_model`.

Each module imports its engine only when called, so importing distill2edge needs none of them.
"""
