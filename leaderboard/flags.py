"""What each sanity flag means, shown as a badge's explanation on the leaderboard.

The names are the ones ``bench.sanity`` writes into ``flags`` of a result
file; a result may also carry its own ``explanation`` string per flag, which
takes precedence. Unknown flags are still shown, with a generic explanation.
"""

from __future__ import annotations

FLAG_EXPLANATIONS: dict[str, str] = {
    "robust-above-clean": "Robust accuracy exceeds clean accuracy: the evaluation is inconsistent "
                          "(e.g. a randomized model or a broken attack).",
    "non-monotone-in-eps": "Robust accuracy rises with a larger budget in the eps sweep: the attack "
                           "is not finding the worst case (possible gradient masking).",
    "blackbox-beats-whitebox": "A score-based black-box attack found adversarial examples that the "
                               "gradient attacks missed: a sign of gradient masking.",
    "more-steps-weaker": "The suite's gradient attack with 4x the steps gave a higher robust accuracy: "
                         "more search must not help the model, so gradients are unreliable (noisy, shattered).",
    "not-converged": "The suite's gradient attack with 4x the steps lowered robust accuracy by more "
                     "than a point: the suite's attack had not converged, the number is optimistic.",
    "unofficial-suite": "Evaluated with another attack suite than the track's official one (AutoAttack's "
                        "standard version for classification): a stronger attack may lower this number.",
    "dirty-tree": "Made from a work tree with uncommitted code changes: the recorded commit is not "
                  "exactly the code that produced the number.",
    "zero-gradients": "Many examples have a zero or NaN input gradient: gradient attacks are blind "
                      "there (gradient masking / obfuscation).",
    "randomized-forward": "Two identical forward passes gave different outputs: the model is "
                          "randomized, so a single-sample attack under-estimates its weakness.",
    "eps0-differs-from-clean": "The attack at eps = 0 does not reproduce clean accuracy: the "
                               "evaluation pipeline is inconsistent.",
    "single-step-gap": "FGSM accuracy is far above PGD accuracy: single-step attacks no longer find "
                       "what multi-step ones find, the sign of catastrophic overfitting.",
    "one-class": "The clean outcomes are those of a model that predicts one class for every input: its "
                 "robust accuracy is that class's share of the examples, which no attack can lower, not "
                 "robustness (e.g. an adversarial training that collapsed). Not ranked.",
}

GENERIC = "A sanity check raised this flag; see the result file for its value."


def explain(name: str, entry: dict | None = None) -> str:
    """The explanation of flag ``name`` (the result's own text first, then the known ones)."""
    own = (entry or {}).get("explanation")
    if isinstance(own, str) and own:
        return own
    return FLAG_EXPLANATIONS.get(name, GENERIC)
