"""xrobust's domain-agnostic adversarial core.

The Python API a user scripts against (cf. RobustBench's ``load_model``)::

    import bench
    track = bench.get_track("image-mnist5k-linf-0.3")
    x, y = track.test_data()
    model = bench.load_model("zoo:image-mnist5k-linf-0.3/pgd-at")   # a published checkpoint (zoo/)
    # or "hf:<repo-or-folder>", "timm:<name>", "torchvision:<name>", "robustbench:...", "module:object"
    report = bench.evaluate(model, x, y, track.threat, suite=track.suite)
    print(report.metrics()["robust_accuracy"])

    # evidence out: keep the adversarial examples, save them, let anyone re-check them
    report = bench.evaluate(model, x, y, track.threat, suite=track.suite, keep_adv=True)
    bench.save_adversarial(report, "adv/", track=track, model="zoo:image-mnist5k-linf-0.3/pgd-at", y=y)
    print(bench.verify_adversarial("adv/", model, track).summary())
"""

from bench import attacks as _attacks  # noqa: F401  (registers attacks and losses)
from bench import losses as _losses  # noqa: F401
from bench import training as _training  # noqa: F401  (registers recipes)
from bench.adversarial import VerifyReport, save_adversarial, verify_adversarial
from bench.checkpoint import load_checkpoint, save_checkpoint
from bench.errors import DataMissingError, UserError
from bench.evaluate import EvalReport, evaluate
from bench.provenance import package_version
from bench.registry import load_domains
from bench.suites import AttackSpec
from bench.task import Context, TaskModel
from bench.threat import ThreatModel
from bench.tracks import Track, get_track
from bench.resolve import load_model

__version__ = package_version()

__all__ = [
    "AttackSpec", "Context", "DataMissingError", "EvalReport", "TaskModel", "ThreatModel", "Track",
    "UserError", "VerifyReport", "evaluate", "get_track", "load_checkpoint", "load_domains", "load_model",
    "save_adversarial", "save_checkpoint", "verify_adversarial",
]
