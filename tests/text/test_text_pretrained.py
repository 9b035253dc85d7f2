"""A Hugging Face text classifier by name (hf:): its tokenizer inside (prepare), its own head kept, attacked in
embedding space and by word substitution through bench.evaluate with the track's official suite."""

import torch

import bench
from bench.resolve import check_compatible, resolve
from bench.tracks import get_track

torch.set_num_threads(1)
TEXT = get_track("text-rt-emb-l2-0.05")


def test_hf_text_classifier_runs_the_official_suite(tiny_hf, small_suite):
    from transformers import AutoTokenizer

    folder = tiny_hf("text", num_labels=2)
    model = resolve(f"hf:{folder}")
    assert model.requirements == {"domain": "text", "num_classes": 2} and model.max_len == 32
    data, _ = TEXT.eval_data()
    data = model.prepare(data.subset(torch.arange(3)))
    ref = AutoTokenizer.from_pretrained(folder)(list(data.inputs["text"]), padding="max_length", truncation=True,
                                                max_length=32, return_tensors="pt")
    assert torch.equal(data.inputs["input_ids"], ref["input_ids"])  # the model's own tokenizer, unchanged
    check_compatible(model, TEXT, data)
    with torch.no_grad():
        z, ctx = model.encode(data.inputs)
        y = model(z, ctx).argmax(-1)
    report = bench.evaluate(model, data.inputs, y, TEXT.threat, small_suite(TEXT.attack_specs), cascade=True,
                            flags=False)
    m = report.metrics()
    assert m["clean_accuracy"] == 1.0
    assert list(m["per_attack"]) == ["apgd-ce", "apgd-t", "fab-t", "square", "word-sub"]
    assert m["robust_accuracy"] <= m["per_attack"]["apgd-ce"] <= 1.0
