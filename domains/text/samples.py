"""Readable evidence of text results (``xrobust eval --samples K``, :mod:`bench.samples`).

Per chosen example, only from discrete attacks (word substitution: pwws, deepwordbug, word-sub; an
embedding-space example has no text form): the original and the adversarial text, each changed word with
its word index and character offsets in both (:func:`changes`, the words of
:mod:`domains.text.constraints`), the attack's word budget for this text, the true label, the model's
prediction and true-class probability on both texts (``classify_texts``, softmax), and the sentence
similarity of the two when the attack measured it (pwws / deepwordbug: MiniLM cosine). No files: the
manifest holds everything.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.errors import UserError
from bench.registry import SAMPLE_WRITERS
from bench.samples import MANIFEST, SampleJob, SampleWriter
from domains.text import constraints as C


def changes(original: str, adversarial: str, edit_distance=None) -> list[dict[str, Any]]:
    """The word swaps turning ``original`` into ``adversarial``: ``{word, start, adv_start, old, new}`` (word
    index among the original's words, character offsets in each text), plus ``edits`` (characters edited)
    when ``edit_distance`` is given. Raises ValueError when the two differ otherwise (words added or
    removed, a separator changed): no discrete attack here does that."""
    pa, pb = C.pieces(original), C.pieces(adversarial)
    why = C.align(original, adversarial)
    if isinstance(why, str):
        raise ValueError(why)
    out, at, adv_at, k = [], 0, 0, 0
    for u, v in zip(pa, pb):
        if C.is_word(u):
            if u != v:
                c = {"word": k, "start": at, "adv_start": adv_at, "old": u, "new": v}
                if edit_distance is not None:
                    c["edits"] = int(edit_distance(u, v))
                out.append(c)
            k += 1
        at, adv_at = at + len(u), adv_at + len(v)
    return out


def _class_name(k: int, names: list) -> str:
    return str(names[k]) if 0 <= k < len(names) else f"class {k}"


def write_text_samples(job: SampleJob) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:class:`bench.samples.SampleWriter` entry: one record per chosen example (see the module docstring)."""
    header = {"task": "classification"}
    if not job.chosen:
        return header, []
    model = job.model
    if not callable(getattr(model, "classify_texts", None)):
        raise UserError("text samples need a model that classifies raw texts (classify_texts)")
    attacks = {s.name: s.build(0) for s in job.suite if s.name in {ex.attack for ex in job.chosen}}
    names = list(job.meta.get("label_names") or job.meta.get("classes") or [])
    originals = [str(ex.record["original"]) for ex in job.chosen]
    adversarials = [str(ex.record["adversarial"]) for ex in job.chosen]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probs = torch.softmax(model.classify_texts(originals + adversarials).float(), dim=1).cpu()
    finally:
        model.train(was_training)
    n = len(originals)
    y = [int(v) for v in torch.as_tensor(job.y).reshape(-1).tolist()]
    out = []
    for i, ex in enumerate(job.chosen):
        attack = attacks.get(ex.attack)
        dist = getattr(attack, "edit_distance", None)
        budget = getattr(attack, "word_budget", None)
        sim = ex.record.get("sentence_similarity")
        p_clean, p_adv = probs[i], probs[n + i]
        out.append({
            "original": originals[i], "adversarial": adversarials[i],
            "unit": "character" if dist is not None else "word",
            "changes": changes(originals[i], adversarials[i], dist),
            "words": len(C.words(originals[i])),
            "budget": int(budget(originals[i])) if callable(budget) else None,
            "label": _class_name(y[i], names),
            "clean_prediction": _class_name(int(p_clean.argmax()), names),
            "adversarial_prediction": _class_name(int(p_adv.argmax()), names),
            "clean_true_prob": float(p_clean[y[i]]), "adversarial_true_prob": float(p_adv[y[i]]),
            "sentence_similarity": float(sim) if isinstance(sim, (int, float)) else None})
    return header, out


def text_problems(manifest: dict[str, Any]) -> list[str]:
    """What the text domain re-checks without a model: each sample's changes are exactly the word swaps of
    its two texts under the constraint set's word split (word indexes included), the word count is the
    original's, and the recorded character edits are the Levenshtein distances."""
    from domains.text.deepwordbug import levenshtein

    out = []
    for s in manifest["samples"]:
        where = f"{MANIFEST}: sample {s['index']}"
        try:
            want = changes(s["original"], s["adversarial"], levenshtein if s["unit"] == "character" else None)
        except ValueError as exc:
            out.append(f"{where}: the adversarial text {exc}")
            continue
        if want != s["changes"]:
            out.append(f"{where}: the recorded changes are not the word swaps between the two texts "
                       f"(recorded {len(s['changes'])}, the texts differ in {len(want)})")
        if s["words"] != len(C.words(s["original"])):
            out.append(f"{where}: words is {s['words']}, the original has {len(C.words(s['original']))}")
    return out


SAMPLE_WRITERS.register("text", SampleWriter("text", write_text_samples, discrete=True, check=text_problems))
