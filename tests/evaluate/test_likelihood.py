"""Teacher-forced answer cross-entropy against a per-example computation without padding."""

import pytest
import torch
import torch.nn.functional as F

from distill2edge.data.qa import load_jsonl
from distill2edge.data.tokenize import encode_for_training
from distill2edge.evaluate.likelihood import answer_cross_entropy
from distill2edge.models import load_model

TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"


def test_answer_ce_matches_unpadded_loop(tiny_llama_dir, qa_jsonl):
    model, tok = load_model(str(tiny_llama_dir))
    examples = load_jsonl(qa_jsonl)[:5]
    got = answer_cross_entropy(model, tok, examples, template=TEMPLATE, max_length=96, batch_size=2)
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            f = encode_for_training(tok, ex, TEMPLATE, 96)
            ids = torch.tensor([f["input_ids"]])
            logits = model(input_ids=ids).logits[0]
            for t, label in enumerate(f["labels"][1:]):
                if label != -100:
                    total += float(F.cross_entropy(logits[t], torch.tensor(label)))
                    count += 1
    assert count > 5 and got == pytest.approx(total / count, rel=1e-4)
