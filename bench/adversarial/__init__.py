"""Adversarial examples out: keep, save and re-check the examples a worst case rests on.

* :mod:`bench.adversarial.examples`: what ``evaluate(..., keep_adv=True)`` keeps per example;
* :mod:`bench.adversarial.files`: the folder ``xrobust eval --save-adv DIR`` writes
  (manifest.json, adv.safetensors, adv.jsonl, plus each domain's readable copies);
* :mod:`bench.adversarial.verify`: ``xrobust verify-adv`` re-scores them against a model and a track.
"""

from bench.adversarial.examples import AdvExample
from bench.adversarial.files import check_output_dir, read_adversarial, save_adversarial
from bench.adversarial.verify import VerifyReport, verify_adversarial

__all__ = ["AdvExample", "VerifyReport", "check_output_dir", "read_adversarial", "save_adversarial",
           "verify_adversarial"]
