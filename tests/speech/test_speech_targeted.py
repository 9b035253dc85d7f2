"""Speech recognition at robust_speech's level: CER next to WER, the achieved SNR of adversarial audio,
targeted attacks towards a chosen transcript or keyword, and adversarial training recipes for CTC."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.attacks.apgd import APGD
from bench.checkpoint import load_checkpoint
from bench.evaluate import evaluate
from bench.pipeline import eval_track
from bench.registry import RECIPES, TARGET_RULES
from bench.results import problems
from bench.suites import AttackSpec
from bench.targeted import evaluate_targeted
from bench.threat import ThreatModel
from bench.tracks import get_track
from domains.speech.models import ctc_loss
from domains.speech.synthdata import DIGIT_WORDS, KEYWORDS
from domains.speech.text import char_edits, encode_batch, ref_chars, targets_to_texts

torch.set_num_threads(1)
SMALL_DIGITS = dict(n_train=48, n_test=24)  # as in conftest.py (same cached sets)
REPO = Path(__file__).resolve().parents[2]
ERM = REPO / "zoo" / "speech-asr-digits-snr-30db" / "ctc-digits__erm.safetensors"
SNR30 = ThreatModel("l2", 30.0, scale="snr-db", bounds=(-1.0, 1.0))


@pytest.mark.parametrize("ref, hyp, edits", [
    ("one two", "one two", 0),
    ("one two", "one too", 1),      # one character substituted
    ("one two", "onetwo", 1),       # the space deleted: one character edit, but two word errors
    ("one", "", 3),
    ("", "oh", 2),
    ("  one   two ", "one two", 0),  # spaces are normalised first
])
def test_char_edits_hand_worked(ref, hyp, edits):
    assert char_edits(ref, hyp) == edits


def test_ref_chars_count_normalised_spaces():
    assert ref_chars("one two") == 7 and ref_chars("  one   two ") == 7 and ref_chars("") == 0


def test_other_digits_targets_differ_in_every_word_and_do_not_depend_on_the_batch():
    rule = TARGET_RULES.get("speech/other-digits")
    refs = ["one two three", "oh five", "nine", "zero zero zero zero zero"]
    y = encode_batch(refs)
    idx = torch.tensor([7, 3, 11, 2])
    _, texts = rule(y, {}, idx, 0)
    for ref, tgt in zip(refs, texts):
        r, t = ref.replace("oh", "zero").split(), tgt.split()
        assert len(t) == len(r) and all(a != b for a, b in zip(r, t)) and set(t) <= set(DIGIT_WORDS)
    # one by one, in another order: the same target per example index
    for k in (2, 0, 3, 1):
        one = encode_batch([refs[k]])
        assert rule(one, {}, idx[k:k + 1], 0)[1] == [texts[k]]
    assert rule(y, {}, idx, 1)[1] != texts  # another seed, other targets
    targets, _ = rule(y, {}, idx, 0)
    assert targets_to_texts(targets) == texts


def test_other_keyword_targets_are_other_keywords():
    rule = TARGET_RULES.get("speech/other-keyword")
    y = torch.arange(12).repeat(20)  # the ten keywords, unknown (10) and silence (11)
    labels, names = rule(y, {"num_keywords": 10, "classes": list(KEYWORDS) + ["unknown", "silence"]},
                         torch.arange(len(y)), 0)
    assert bool((labels != y).all()) and bool((labels < 10).all())
    assert names == [KEYWORDS[int(c)] for c in labels]
    assert len(set(labels[y == 0].tolist())) > 3  # drawn, not a fixed map


def test_targeted_apgd_reaches_chosen_classes_of_a_linear_model():
    from bench.task import as_task_model

    torch.manual_seed(0)
    net = as_task_model(torch.nn.Linear(20, 4))
    x = torch.rand(40, 20)
    y = net(x).argmax(1)
    target = (y + 1 + torch.randint(0, 3, (40,))) % 4
    from bench.attacks.targeted import TargetedAPGD

    wide = ThreatModel("linf", 1.0)
    adv = TargetedAPGD(steps=50).run(net, x, None, target, wide)
    hit = net(adv).argmax(1) == target
    assert float(hit.float().mean()) >= 0.9
    # at eps 0 nothing moves: only examples already at their target count (none here)
    none = TargetedAPGD(steps=5).run(net, x, None, target, ThreatModel("linf", 0.0))
    assert torch.equal(none, x) and not bool((net(none).argmax(1) == target).any())


def test_evaluate_keeps_cer_and_achieved_snr_of_the_worst_case(speech_cache, small_digits):
    """The published ERM recognizer on 8 generated utterances: the worst case's CER comes from the same
    hypotheses as its word errors, and every achieved SNR is at or above the 30 dB budget."""
    model = load_checkpoint(ERM)
    data = small_digits[1]
    x, y = data.inputs[:8], {k: v[:8] for k, v in data.y.items()}
    suite = [AttackSpec("pgd-5", "pgd", {"steps": 5}), AttackSpec("pgd-1", "pgd", {"steps": 1})]
    rep = evaluate(model, x, y, SNR30, suite, batch_size=8, flags=False)
    m = model.extra_metrics(rep, y)
    d = rep.details
    refs = targets_to_texts(y)
    assert d["units/char"].tolist() == [ref_chars(r) for r in refs]
    assert m["clean_cer"] == pytest.approx(float(d["clean/char"].sum() / d["units/char"].sum()))
    assert m["robust_cer"] > m["clean_cer"] and m["robust_wer"] > m["clean_wer"]
    # per utterance, the robust character errors are those of the attack the word errors chose
    for i in range(8):
        src = next((k for k, v in rep.attack_errors.items() if v[i] == rep.robust_errors[i]
                    and v[i] > rep.clean_errors[i]), None)
        want = d[f"attack/{src}/char"][i] if src else d["clean/char"][i]
        assert d["robust/char"][i] == want
    snr = rep.achieved()
    raised = rep.robust_errors > rep.clean_errors
    assert bool(torch.isnan(snr[~raised]).all()) and bool((snr[raised] >= 30 - 1e-3).all())
    assert bool((snr[raised] < 31).all())  # PGD spends the budget
    assert rep.metrics()["achieved_snr_db"]["n"] == int(raised.sum())


def test_targeted_ctc_attack_chooses_the_transcript(speech_cache, small_digits):
    """Carlini & Wagner 2018's question on the published ERM recognizer: at 30 dB SNR, APGD on the CTC
    loss of a target (every digit replaced) makes it say the target on most utterances; at 60 dB on few."""
    model = load_checkpoint(ERM)
    data = small_digits[1]
    x, y = data.inputs[:6], {k: v[:6] for k, v in data.y.items()}
    spec = AttackSpec("tgt", "apgd-targeted", {"steps": 40})
    rep = evaluate_targeted(model, x, y, SNR30, spec, "speech/other-digits", batch_size=6)
    m = rep.metrics()
    assert m["success_rate"] >= 4 / 6 and m["clean_success_rate"] == 0.0
    assert m["target_wer"] < 0.2 and m["target_cer"] < 0.1
    assert 30 - 1e-3 <= m["achieved_snr_db"]["mean"] < 31
    with torch.no_grad():  # the clean transcripts are far from the targets
        clean = model.errors(model.predict(x), encode_batch(rep.targets))
    assert float(clean.sum()) >= sum(len(t.split()) for t in rep.targets) * 0.8
    quiet = evaluate_targeted(model, x, y, SNR30.with_eps(60.0), spec, "speech/other-digits", batch_size=6)
    assert quiet.metrics()["success_rate"] < m["success_rate"]


def test_asr_result_file_has_cer_snr_and_targets_and_validation_catches_tampering(speech_cache, small_digits,
                                                                                tmp_path):
    track = replace(get_track("speech-asr-digits-snr-30db"), id="speech-asr-tiny", n_eval=6,
                    dataset_kwargs={**SMALL_DIGITS, "progress": False},
                    suite=(AttackSpec("pgd-3", "pgd", {"steps": 3}),),
                    targeted=AttackSpec("apgd-targeted", "apgd-targeted", {"steps": 20}))
    path = eval_track(track, ERM, results=tmp_path, progress=False, flags=False)
    doc = json.loads(path.read_text())
    assert problems(doc) == []
    m, pe = doc["metrics"], doc["per_example"]
    assert sum(pe["robust_char_errors"]) / sum(pe["ref_chars"]) == pytest.approx(m["robust_cer"], abs=1e-12)
    assert m["targeted"]["rule"] == "speech/other-digits" and len(pe["targeted"]["targets"]) == 6
    assert m["targeted"]["success_rate"] == pe["targeted"]["success"].count("1") / 6
    assert all(v is None or v >= 30 - 1e-3 for v in pe["achieved_snr_db"])

    def broken(edit):
        bad = json.loads(json.dumps(doc))
        edit(bad)
        return problems(bad)

    def flip(bad):
        s = bad["per_example"]["targeted"]["success"]
        bad["per_example"]["targeted"]["success"] = ("0" if s[0] == "1" else "1") + s[1:]

    assert any("success_rate" in p or "marked" in p for p in broken(flip))

    def loud(bad):
        i = next(i for i, v in enumerate(bad["per_example"]["achieved_snr_db"]) if v is not None)
        bad["per_example"]["achieved_snr_db"][i] = 25.0

    assert any("below the 30.0 dB budget" in p for p in broken(loud))

    def cer(bad):
        bad["metrics"]["robust_cer"] += 0.01

    assert any("metrics/robust_cer" in p for p in broken(cer))

    def alone(bad):
        del bad["per_example"]["targeted"]

    assert any("must come together" in p for p in broken(alone))


def test_ctc_recipes_train_and_mart_says_why_not(speech_cache, small_digits):
    from bench.errors import UserError

    model = load_checkpoint(ERM)
    data = small_digits[0]
    x, y = data.inputs[:4], {k: v[:4] for k, v in data.y.items()}
    z, ctx = model.encode(x)
    objective = lambda out: float(ctc_loss(out, y).detach().mean())  # noqa: E731
    model.eval()
    with torch.no_grad():
        clean_loss = objective(model(z, ctx))
    for name, params in (("mixed-at", {"clean_weight": 0.5, "steps": 2}), ("trades", {"steps": 2})):
        rec = RECIPES.get(name)(**params)
        z_adv = rec.inner(model, z, ctx, y, SNR30, {"step": 0})
        assert bool(SNR30.contains(z_adv, z).all()) and not torch.equal(z_adv, z)
        with torch.no_grad():
            loss = float(rec.loss(model, z, z_adv, ctx, y, {}))
            same = float(rec.loss(model, z, z, ctx, y, {}))  # no perturbation: TRADES's KL and the mixture vanish
        assert same == pytest.approx(clean_loss, rel=1e-5)
        assert loss > same  # the adversarial point costs more
    with torch.no_grad():
        one = float(RECIPES.get("mixed-at")(clean_weight=1.0).loss(model, z, z_adv, ctx, y, {}))
        zero = float(RECIPES.get("mixed-at")(clean_weight=0.0).loss(model, z, z_adv, ctx, y, {}))
    assert one == pytest.approx(clean_loss, rel=1e-5)
    assert zero == pytest.approx(objective(model(z_adv, ctx)), rel=1e-5)
    with pytest.raises(UserError, match="one class probability per example"):
        RECIPES.get("mart")().inner(model, z, ctx, y, SNR30, {"step": 0})
    with pytest.raises(UserError, match="clean_weight must be in"):
        RECIPES.get("mixed-at")(clean_weight=1.5)


def test_relative_linf_track_attacks_within_one_percent_of_the_peak(speech_cache, small_digits):
    """robust_speech's Linf geometry in relative terms: every sample of the perturbation within 40 dB of the
    clip's peak; the ASR suite's attacks raise the WER and their achieved budget is at or above 40 dB."""
    track = get_track("speech-asr-digits-linf-40db")
    assert track.threat.id == "linf-40db" and track.metric == "wer" and track.targeted is not None
    model = load_checkpoint(ERM)
    data = small_digits[1]
    x, y = data.inputs[:4], {k: v[:4] for k, v in data.y.items()}
    rep = evaluate(model, x, y, track.threat, [AttackSpec("apgd-10", "apgd", {"steps": 10})], batch_size=4,
                   flags=False)
    assert float(rep.robust_errors.sum()) > float(rep.clean_errors.sum())
    snr = rep.achieved()
    assert bool((snr[~torch.isnan(snr)] >= 40 - 1e-3).all())
    wav = x.float() / 32768.0
    z_adv = APGD(steps=3).run(model, wav, None, y, track.threat)
    peak = wav.abs().amax(1, keepdim=True)
    assert bool(((z_adv - wav).abs() <= peak * 10 ** (-40 / 20) * (1 + 1e-5)).all())


def test_targeted_keyword_attack_on_the_published_kws_model(speech_cache, small_commands):
    """Keyword spotting, targeted to a chosen keyword: the published ERM model on 16 generated keyword clips
    says the drawn other keyword on most of them at 30 dB, and on none without a budget."""
    model = load_checkpoint(REPO / "zoo" / "speech-kws-snr-30db" / "melcnn__erm.safetensors")
    data = small_commands[1]
    keep = (data.y < 10).nonzero().squeeze(1)[:16]
    x, y = data.inputs[keep], data.y[keep]
    spec = AttackSpec("tgt", "apgd-targeted", {"steps": 30})
    rep = evaluate_targeted(model, x, y, SNR30, spec, "speech/other-keyword", meta=data.meta, index=keep,
                            batch_size=16)
    assert set(rep.targets) <= set(KEYWORDS) and all(t != KEYWORDS[int(c)] for t, c in zip(rep.targets, y))
    assert rep.metrics()["success_rate"] >= 0.5 and "target_wer" not in rep.metrics()
    none = evaluate_targeted(model, x, y, SNR30.with_eps(200.0), spec, "speech/other-keyword", meta=data.meta,
                             index=keep, batch_size=16)
    assert none.metrics()["success_rate"] == none.metrics()["clean_success_rate"]
