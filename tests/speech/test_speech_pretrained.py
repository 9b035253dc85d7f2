"""Hugging Face speech models by name (hf:): the feature extractor inside, on the raw waveform; CTC log-probs
mapped onto the ASR tracks' alphabet; each run through bench.evaluate with the track's official suite."""

import pytest
import torch

import bench
from bench.data import ArrayData
from bench.errors import UserError
from bench.resolve import check_compatible, resolve
from bench.tracks import get_track
from domains.speech.pretrained import alphabet_map
from domains.speech.text import NUM_TOKENS, encode_batch, greedy_decode

torch.set_num_threads(1)
KWS = get_track("speech-kws-snr-30db")
ASR = get_track("speech-asr-digits-snr-30db")


def waves(n: int, seconds: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(16000 * seconds)) / 16000
    tone = torch.sin(2 * torch.pi * 440 * t) * 0.3
    return (tone + 0.05 * torch.randn(n, t.numel(), generator=g)).clamp(-1, 1)


def test_hf_audio_classifier_normalises_inside_and_runs_the_official_suite(tiny_hf, small_suite):
    from transformers import AutoFeatureExtractor

    folder = tiny_hf("audio", num_labels=12)
    model = resolve(f"hf:{folder}", hints={"num_keywords": 10})
    assert model.requirements == {"domain": "speech", "sample_rate": 16000, "num_classes": 12}
    x = waves(3)
    ref = AutoFeatureExtractor.from_pretrained(folder)(list(x.numpy()), sampling_rate=16000, return_tensors="pt")
    assert torch.allclose(model.net.front(x), ref["input_values"].float(), atol=1e-4)
    with torch.no_grad():
        y = model.predict(x).argmax(-1)
    check_compatible(model, KWS, ArrayData(x, y, {"num_classes": 12, "sample_rate": 16000}))
    report = bench.evaluate(model, x, y, KWS.threat, small_suite(KWS.attack_specs), cascade=KWS.cascade, flags=False)
    m = report.metrics()
    assert m["clean_accuracy"] == 1.0 and list(m["per_attack"]) == ["apgd-ce", "apgd-t", "fab-t", "square", "apgd-ce-1000"]
    assert m["robust_accuracy"] <= 1.0
    assert set(model.extra_metrics(report, y)) == {"clean_accuracy_keywords", "robust_accuracy_keywords", "n_keywords"}


def test_a_different_sampling_rate_does_not_fit(tiny_hf):
    model = resolve(f"hf:{tiny_hf('audio', num_labels=12, sampling_rate=8000)}")
    with pytest.raises(UserError, match=r"sample_rate 8000 \(the track: 16000\)"):
        check_compatible(model, KWS, ArrayData(waves(2), torch.zeros(2, dtype=torch.long),
                                               {"num_classes": 12, "sample_rate": 16000}))


def test_hf_ctc_outputs_log_probs_over_our_alphabet_and_runs_the_asr_suite(tiny_hf, small_suite):
    from transformers import AutoModelForCTC, AutoTokenizer

    folder = tiny_hf("ctc")
    model = resolve(f"hf:{folder}")
    assert model.objective == "ctc" and model.requirements["num_tokens"] == NUM_TOKENS
    x = waves(2, 1.0)
    with torch.no_grad():
        # make the tokens our alphabet cannot write (<s>, </s>, <unk>) unlikely, so that the mapped greedy
        # decoding must equal transformers' own decoding of the same frames, letter case and "|" aside
        model.net.model.lm_head.bias[1:4] -= 30.0
        logp = model.predict(x)
        assert logp.shape[-1] == NUM_TOKENS
        assert torch.allclose(logp.logsumexp(-1), torch.zeros(logp.shape[:2]), atol=1e-4)  # a distribution
        hf = AutoModelForCTC.from_pretrained(folder).eval()
        hf.lm_head.bias.data[1:4] -= 30.0
        ids = hf(input_values=model.net.front(x)).logits.argmax(-1)
    theirs = [" ".join(t.lower().split()) for t in AutoTokenizer.from_pretrained(folder).batch_decode(ids)]
    assert greedy_decode(logp) == theirs and any(theirs)
    y = encode_batch(["one two", "three"])
    report = bench.evaluate(model, x, y, ASR.threat, small_suite(ASR.attack_specs), cascade=ASR.cascade, flags=False)
    assert list(report.attack_errors) == ["apgd-ctc", "pgd-20"]
    assert bool((report.robust_errors >= report.clean_errors).all()) and report.units.tolist() == [2.0, 1.0]
    assert {"clean_wer", "robust_wer"} <= set(model.extra_metrics(report, y))


def test_a_vocabulary_that_is_not_character_level_is_refused():
    with pytest.raises(UserError, match="must be character-level"):
        alphabet_map({"<pad>": 0, "|": 1, "▁the": 2, "▁one": 3}, blank=0, delimiter="|")
