"""Benchmark tracks, declared as data.

A track fixes everything a comparison needs: domain, dataset and its fixed
evaluation subset, model family, threat model, attack suite, metric and the
training budget every defense gets. Domains register their tracks in
``bench.registry.TRACKS``; code never branches on a track id.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch

from bench.data import ArrayData
from bench.errors import UserError
from bench.registry import DATASETS, TRACKS
from bench.suites import AttackSpec, resolve_suite
from bench.threat import ThreatModel


@dataclass(frozen=True)
class TrainSpec:
    """The training budget of a track (same for every defense), plus per-recipe parameters."""

    epochs: float = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "cosine"
    weight_decay: float = 0.0
    eps_ramp_epochs: float = 0.0
    grad_clip: float | None = None
    recipe_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: nominal epochs for one recipe instead of ``epochs`` (e.g. Free-AT, whose nominal epochs count
    #: gradient computations: ``epochs`` / m passes of m replays)
    recipe_epochs: Mapping[str, float] = field(default_factory=dict)

    def epochs_for(self, recipe: str) -> float:
        return float(self.recipe_epochs.get(recipe, self.epochs))


@dataclass(frozen=True)
class CertifySpec:
    """How a certification track runs CERTIFY (Cohen, Rosenfeld & Kolter 2019, Alg. 1): noise level, sample
    counts, confidence and the radii at which certified accuracy is reported.

    Attributes:
        sigma: standard deviation of the Gaussian noise added to ``z`` (and of the ``gaussian-aug`` training).
        n0: samples that select the top class; n: samples that estimate its probability (CPU counts).
        alpha: the certificate holds with probability >= 1 - alpha per example.
        radii: where certified accuracy is reported, in the units of the track's threat eps (absolute L2,
            dB SNR, or a fraction of the embedding scale per token); the threat's own eps is the headline.
        n0_full, n_full: the paper's counts, used instead when CUDA is available.
        batch: noise samples per forward pass (memory only: results do not depend on it).
        relative: ``sigma`` is a fraction of the model's ``ctx.eps_scale`` (token embeddings, whose scale the
            model learns), as relative threat models read eps.
    """

    sigma: float
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    radii: tuple[float, ...] = ()
    n0_full: int = 100
    n_full: int = 100_000
    batch: int = 1000
    relative: bool = False

    def __post_init__(self) -> None:
        if not self.sigma > 0 or not 0 < self.alpha < 0.5 or self.n0 < 1 or self.n < 1 or self.batch < 1:
            raise ValueError(f"bad certification spec {self}")

    def counts(self, full: bool) -> tuple[int, int]:
        """``(n0, n)``: the paper's when ``full`` (a GPU), the CPU-scaled ones otherwise."""
        return (self.n0_full, self.n_full) if full else (self.n0, self.n)

    @property
    def id(self) -> str:
        """The results folder of the track's certified results, e.g. ``smooth-0.25``."""
        from bench.threat import format_eps

        return f"smooth-{format_eps(self.sigma)}"


@dataclass(frozen=True)
class Track:
    """A standardized benchmark track.

    Attributes:
        id: stable id, e.g. ``image-mnist5k-linf-0.3``.
        domain, dataset, model: registered names.
        threat: the threat model of the headline number.
        suite: attack specs (or a registered suite name).
        n_eval: size of the fixed evaluation subset of the test split.
        metric: ``accuracy`` or ``wer``.
        headline: the metrics keys ``(clean, robust)`` the leaderboard, the cross-domain table
            and mean ranks read (default: ``clean_accuracy``/``robust_accuracy``, or
            ``clean_wer``/``robust_wer`` for WER tracks); e.g. keyword-only accuracy for KWS.
        eps_sweep: extra eps values, each evaluated with the headline suite (or ``sweep_suite``,
            only where a committed measurement shows it equivalent) on the first ``sweep_n``
            examples of the evaluation subset (all when ``None``).
        quick: part of ``xrobust run quick``.
        recipes: the recipes ``xrobust run`` trains by default.
        cascade: attack only still-robust examples (AutoAttack's order).
        zoo_n: the prefix of the evaluation subset ``xrobust run quick`` re-evaluates each published
            checkpoint on (:mod:`bench.reproduce`).
        corruptions: a *corruption track* (:mod:`bench.corruptions`, :mod:`bench.corruption_eval`): the
            corruption keys it evaluates, each at ``severities`` (default: every severity the corruption
            has); empty for attack tracks. Build one with :func:`corruption_track`.
        corruption_set: the corruption track's set id (its results folder, e.g. ``mnist-c``).
        checkpoints_from: the attack track whose training budget, threat (for adversarial recipes)
            and published checkpoints a corruption track uses.
        certify: a *certification track* (:mod:`bench.certify`): randomized smoothing at this noise level;
            its threat is L2 and gives the units of the radii and the headline radius (its eps).
    """

    id: str
    domain: str
    dataset: str
    model: str
    threat: ThreatModel
    suite: tuple[AttackSpec, ...] | str = "pgd"
    n_eval: int = 1000
    metric: str = "accuracy"
    train: TrainSpec = TrainSpec()
    headline: tuple[str, str] | None = None
    eps_sweep: tuple[float, ...] = ()
    sweep_suite: tuple[AttackSpec, ...] | str | None = None
    sweep_n: int | None = None
    quick: bool = False
    recipes: tuple[str, ...] = ("erm", "pgd-at")
    cascade: bool = False
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    dataset_kwargs: Mapping[str, Any] = field(default_factory=dict)
    eval_batch_size: int = 250
    #: how many examples (a prefix of the fixed subset) ``xrobust run quick`` re-evaluates each
    #: published checkpoint on (:mod:`bench.reproduce`)
    zoo_n: int = 100
    description: str = ""
    corruptions: tuple[str, ...] = ()
    corruption_set: str | None = None
    severities: tuple[int, ...] | None = None
    checkpoints_from: str | None = None
    certify: CertifySpec | None = None
    #: a targeted evaluation run beside the worst case (:mod:`bench.targeted`): the attack, and the
    #: registered rule (``TARGET_RULES``) that draws each example's target
    targeted: AttackSpec | None = None
    target_rule: str | None = None
    #: the threat the recipes train against when it is not ``threat``: a discrete track (``words-*``) has no
    #: geometry to train in, so its models are adversarially trained in embedding space
    train_threat: ThreatModel | None = None

    def __post_init__(self) -> None:
        if self.threat.discrete:
            if self.train_threat is None or self.train_threat.discrete:
                raise UserError(f"track {self.id}: a discrete threat needs a continuous train_threat")
            for spec in resolve_suite(self.suite):
                if float(dict(spec.params).get("max_frac", -1)) != self.threat.eps:
                    raise UserError(f"track {self.id}: attack {spec.name} must declare max_frac = "
                                     f"{self.threat.eps} (the threat {self.threat.id})")

    @property
    def training_threat(self) -> ThreatModel:
        """The threat adversarial recipes train against (``train_threat``, else the headline threat)."""
        return self.train_threat or self.threat

    @property
    def kind(self) -> str:
        """``attack`` (worst case under a threat model), ``corruption`` (common corruptions) or ``certified``
        (randomized smoothing)."""
        if self.certify is not None:
            return "certified"
        return "corruption" if self.corruptions else "attack"

    def result_ids(self) -> dict[str, Any]:
        """The ids :func:`bench.results.result_path` places this track's result files by."""
        ids: dict[str, Any] = {"domain": self.domain, "dataset": self.dataset, "model": self.model}
        if self.kind == "corruption":
            ids.update(kind="corruption", corruption_set={"id": self.corruption_set})
        elif self.kind == "certified":
            ids.update(kind="certified", certification={"id": self.certify.id})
        else:
            ids["threat"] = self.threat.to_dict()
        return ids

    @property
    def attack_specs(self) -> tuple[AttackSpec, ...]:
        return resolve_suite(self.suite)

    @property
    def headline_keys(self) -> tuple[str, str]:
        """The ``(clean, robust)`` metrics keys of the headline number."""
        if self.headline is not None:
            return tuple(self.headline)
        return ("clean_wer", "robust_wer") if self.metric == "wer" else ("clean_accuracy", "robust_accuracy")

    def dataset_split(self, split: str, root: str | None = None) -> ArrayData:
        loader = DATASETS.get(self.dataset)
        return loader(split=split, root=root, **dict(self.dataset_kwargs))

    def eval_indices(self, n_test: int) -> torch.Tensor:
        """The fixed evaluation subset: the first ``n_eval`` of a seed-0 permutation of the test split,
        in permutation order, so every prefix (``--n``, ``sweep_n``) is itself a uniform random subset
        (a test split stored class by class, like MNIST-5k's, would otherwise give a prefix of 0s and 1s)."""
        perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(0))
        return perm[: min(self.n_eval, n_test)]

    def eval_data(self, root: str | None = None) -> tuple[ArrayData, torch.Tensor]:
        test = self.dataset_split("test", root)
        idx = self.eval_indices(len(test))
        return test.subset(idx), idx

    def test_data(self, root: str | None = None) -> tuple[Any, Any]:
        """The fixed evaluation subset as ``(x, y)`` (raw inputs, labels)."""
        data, _ = self.eval_data(root)
        return data.inputs, data.y

    def with_threat(self, threat: ThreatModel) -> "Track":
        return replace(self, threat=threat)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "certified":
            from dataclasses import asdict

            return {"id": self.id, "kind": self.kind, "domain": self.domain, "dataset": self.dataset,
                    "model": self.model, "threat": self.threat.to_dict(), "certify": asdict(self.certify),
                    "n_eval": self.n_eval, "metric": self.metric, "headline": list(self.headline_keys),
                    "quick": self.quick}
        if self.kind == "corruption":
            return {"id": self.id, "kind": self.kind, "domain": self.domain, "dataset": self.dataset,
                    "model": self.model, "corruption_set": self.corruption_set, "corruptions": list(self.corruptions),
                    "severities": list(self.severities) if self.severities else None, "n_eval": self.n_eval,
                    "metric": self.metric, "checkpoints_from": self.checkpoints_from, "quick": self.quick}
        return {
            "id": self.id, "domain": self.domain, "dataset": self.dataset, "model": self.model,
            "threat": self.threat.to_dict(), "suite": [s.to_dict() for s in self.attack_specs],
            "n_eval": self.n_eval, "metric": self.metric, "headline": list(self.headline_keys),
            "eps_sweep": list(self.eps_sweep), "sweep_n": self.sweep_n, "quick": self.quick, "cascade": self.cascade,
            **({"targeted": self.targeted.to_dict(), "target_rule": self.target_rule} if self.targeted else {}),
            **({"train_threat": self.train_threat.to_dict()} if self.train_threat is not None else {}),
        }


def corruption_track(base: Track, *, id: str, corruption_set: str, corruptions: tuple[str, ...],
                     n_eval: int | None = None, severities: tuple[int, ...] | None = None,
                     description: str = "", quick: bool = False) -> Track:
    """A corruption track on ``base``'s dataset, model family and training budget: it evaluates the
    checkpoints of ``base`` (trained there, published in ``base``'s zoo) under ``corruptions``."""
    if not corruptions:
        raise ValueError(f"corruption track {id}: no corruptions")
    return replace(base, id=id, corruptions=tuple(corruptions), corruption_set=corruption_set,
                   severities=severities, checkpoints_from=base.id, n_eval=n_eval or base.n_eval, suite=(),
                   eps_sweep=(), sweep_suite=None, sweep_n=None, cascade=False, headline=None, quick=quick,
                   description=description, targeted=None, target_rule=None)


def certification_track(base: Track, *, id: str, sigma: float, threat: ThreatModel, radii: tuple[float, ...],
                        n_eval: int, n0: int = 100, n: int = 1000, alpha: float = 0.001, batch: int = 1000,
                        headline: tuple[str, str] | None = None, description: str = "", relative: bool = False) -> Track:
    """A randomized-smoothing track on ``base``'s dataset, model family and training budget: the
    ``gaussian-aug`` recipe at ``sigma`` is trained on it (its own zoo) and certified (:mod:`bench.certify`)
    on the first ``n_eval`` examples of the fixed subset. ``threat`` (L2) gives the radii's units and the
    headline radius (its eps); ``headline``: the metrics keys (default clean / certified accuracy)."""
    if threat.norm != "l2":
        raise ValueError(f"certification track {id}: randomized smoothing with Gaussian noise certifies L2 balls")
    spec = CertifySpec(sigma=sigma, n0=n0, n=n, alpha=alpha, radii=tuple(float(r) for r in radii), batch=batch,
                       relative=relative)
    aug = {"sigma": float(sigma), **({"relative": True} if relative else {})}
    params = {**{k: dict(v) for k, v in base.train.recipe_params.items()}, "gaussian-aug": aug}
    return replace(base, id=id, threat=threat, certify=spec, n_eval=n_eval, suite=(), eps_sweep=(), sweep_suite=None,
                   sweep_n=None, cascade=False, quick=False, recipes=("gaussian-aug",), zoo_n=min(20, n_eval),
                   train=replace(base.train, eps_ramp_epochs=0.0, recipe_params=params),
                   headline=headline or ("clean_accuracy", "certified_accuracy"), description=description,
                   targeted=None, target_rule=None)


def get_track(track_id: str) -> Track:
    """The registered track with this id (did-you-mean error otherwise)."""
    return TRACKS.get(track_id)


def register_track(track: Track) -> Track:
    TRACKS.register(track.id, track)
    return track
