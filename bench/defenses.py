"""Inference-time defenses and the adaptive attacks that evaluate them.

Most broken defenses were not training recipes but input transformations, randomness or
non-differentiable preprocessing in front of an ordinary model (Athalye, Carlini & Wagner, ICML 2018,
"Obfuscated gradients give a false sense of security": 7 of 9 ICLR 2018 defenses). This module
makes such a defense a registered, composable thing and evaluates it the way that paper and
AutoAttack do:

- :class:`InputTransform`: a registered transform (``TRANSFORMS``, key ``<domain>/<name>``) applied to
  the attack space ``z`` (pixels, waveform, embeddings) in front of any trained model; it declares
  whether it is differentiable, whether it is random, and its BPDA stand-in.
- :class:`TransformedModel`: ``model ∘ transform`` as a :class:`~bench.task.TaskModel`. In the plain
  mode a non-differentiable transform passes no gradient (what autograd gives a naive attacker);
  with ``bpda=True`` the backward pass goes through the stand-in instead (Backward Pass
  Differentiable Approximation, Athalye et al. §4.1; identity by default: the transform is close to
  the identity, so its Jacobian is taken as I).
- EOT (Expectation over Transformation, Athalye et al. §4.3): a gradient attack with ``eot = N``
  averages the loss and the input gradient over N stochastic forward passes
  (:func:`bench.attacks.base.loss_and_grad` reads :attr:`EOTView.eot_samples`).
- :func:`choose_protocol`: the official suite switches by itself. A ``randomized-forward`` model gets
  AutoAttack's ``rand`` version (APGD-CE and APGD-DLR, EOT over 20 samples; Croce & Hein 2020); a
  model with ``zero-gradients`` or a transform that declares itself non-differentiable gets BPDA.
  The result file records which protocol ran and why (``protocol``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from bench.errors import UserError
from bench.registry import SUITES, TRANSFORMS
from bench.suites import AttackSpec
from bench.task import Context, TaskModel

#: ``fn(z, params, generator) -> z'``: same shape and dtype; ``generator`` is None for a deterministic transform
TransformFn = Callable[[torch.Tensor, Mapping[str, Any], "torch.Generator | None"], torch.Tensor]

#: AutoAttack's ``rand`` version: APGD-CE and APGD-DLR (untargeted), 100 steps, EOT over 20 samples
RAND = (AttackSpec("apgd-ce-eot", "apgd", {"steps": 100, "loss": "ce", "eot": 20}),
        AttackSpec("apgd-dlr-eot", "apgd", {"steps": 100, "loss": "dlr", "eot": 20}))
SUITES.register("rand", RAND)

#: samples per gradient of the ``rand`` protocol (AutoAttack's eot_iter)
RAND_EOT = 20


@dataclass(frozen=True)
class InputTransform:
    """An inference-time input transformation.

    Attributes:
        name: short id, unique within its domain (``jpeg``).
        domain: ``image``, ``speech`` or ``text``.
        fn: the transform, see :data:`TransformFn`.
        params: default parameters (overridable per evaluation, recorded in the result file).
        differentiable: autograd gives its true gradient (else: zero gradient in the plain mode).
        randomized: draws randomness at every forward pass (gets EOT).
        bpda: the backward stand-in for a non-differentiable transform: ``None`` for the identity,
            or a differentiable ``fn(z, params) -> z'`` whose vector-Jacobian product is used.
        description: one line, with its source.
        stage: ``"z"`` (applied to the attack space in every forward pass) or ``"input"`` (applied to the
            raw inputs before the model's own preprocessing, e.g. a spelling corrector in front of a
            tokenizer: seen by discrete attacks and corruptions, not by attacks in ``z``).
    """

    name: str
    domain: str
    fn: TransformFn
    params: Mapping[str, Any] = field(default_factory=dict)
    differentiable: bool = True
    randomized: bool = False
    bpda: Callable[[torch.Tensor, Mapping[str, Any]], torch.Tensor] | None = None
    description: str = ""
    stage: str = "z"

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.name}"

    def ident(self, params: Mapping[str, Any]) -> str:
        """The id used in the defense name: ``jpeg-quality75`` (non-default parameters only, sorted)."""
        extra = [f"{k}{_fmt(v)}" for k, v in sorted(params.items()) if self.params.get(k) != v]
        return "-".join([self.name, *extra])


def _fmt(v: Any) -> str:
    return (f"{v:g}" if isinstance(v, float) else str(v)).replace("/", "_")


def register_transform(t: InputTransform) -> InputTransform:
    TRANSFORMS.register(t.key, t)
    return t


def parse_transform(spec: str, domain: str) -> tuple[InputTransform, dict[str, Any]]:
    """``name[:k=v,k=v]`` -> (transform of ``domain``, full parameters). Unknown names or keys: UserError."""
    name, _, rest = spec.partition(":")
    key = f"{domain}/{name.strip()}"
    if key not in TRANSFORMS:
        known = sorted(k.split("/", 1)[1] for k in TRANSFORMS.names() if k.startswith(domain + "/"))
        raise UserError(f"unknown {domain} transform {name!r}; known: {', '.join(known) or 'none'}")
    t = TRANSFORMS.get(key)
    params = dict(t.params)
    for item in filter(None, (s.strip() for s in rest.split(","))):
        k, sep, v = item.partition("=")
        if not sep or k not in t.params:
            raise UserError(f"transform {name}: bad parameter {item!r}; parameters: {', '.join(t.params) or 'none'}")
        default = t.params[k]
        try:
            params[k] = type(default)(v) if not isinstance(default, bool) else v.lower() in ("1", "true", "yes")
        except ValueError:
            raise UserError(f"transform {name}: {k} must be a {type(default).__name__}, got {v!r}") from None
    return t, params


class _BPDA(torch.autograd.Function):
    """Forward: the transform's output; backward: the stand-in's vector-Jacobian product (identity: the
    incoming gradient itself)."""

    @staticmethod
    def forward(ctx, z, out, standin, params):  # noqa: D401
        ctx.standin, ctx.params = standin, params
        ctx.save_for_backward(z)
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        if ctx.standin is None:
            return grad, None, None, None
        (z,) = ctx.saved_tensors
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(ctx.standin(zz, ctx.params), zz, grad)
        return g, None, None, None


class _Delegating:
    """Attributes this wrapper lacks are the wrapped model's (``self.inner``): ``objective``, ``errors``,
    ``binary_errors``, ``source``, ... so attacks and metrics treat the wrapper as the model."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


class TransformedModel(_Delegating, TaskModel):
    """``inner ∘ transform``: a trained model behind an inference-time transform.

    Attributes of the inner model are visible through this one (:class:`_Delegating`).
    """

    def __init__(self, inner: TaskModel, transform: InputTransform, params: Mapping[str, Any] | None = None,
                 *, bpda: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.transform = transform
        self.params = dict(transform.params if params is None else params)
        self.bpda = bool(bpda)
        self.seed = int(seed)
        self._gen: torch.Generator | None = None

    def reseed(self, seed: int | None = None) -> None:
        """Restart the transform's random stream (a randomized transform's draws are a function of it)."""
        self._gen = None
        if seed is not None:
            self.seed = int(seed)

    def _generator(self, device) -> torch.Generator | None:
        if not self.transform.randomized:
            return None
        if self._gen is None or self._gen.device != torch.device(device):
            self._gen = torch.Generator(device=device)
            self._gen.manual_seed(self.seed)
        return self._gen

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        t = self.transform
        if t.stage != "z":
            return z
        gen = self._generator(z.device)
        if t.differentiable:
            return t.fn(z, self.params, gen)
        with torch.no_grad():
            out = t.fn(z.detach(), self.params, gen)
        if self.bpda and z.requires_grad:
            return _BPDA.apply(z, out, t.bpda, self.params)
        # plain mode: the output is attached to z with a zero gradient, as a naive attacker would see it
        return out + 0.0 * z if z.requires_grad else out

    def encode(self, inputs: Any) -> tuple[torch.Tensor, Context]:
        return self.inner.encode(inputs)

    # ------------------------------------------------ raw inputs (stage "input")
    def apply_raw(self, raw: Any) -> Any:
        """The transform on raw inputs (stage ``input``); the inputs unchanged otherwise."""
        if self.transform.stage != "input":
            return raw
        return self.transform.fn(raw, self.params, self._generator("cpu"))

    def prepare(self, data):
        """The inner model's preprocessing, after the transform for an input-stage one."""
        from bench.data import ArrayData

        if self.transform.stage == "input" and not isinstance(data.inputs, dict):
            data = ArrayData(self.apply_raw(data.inputs), data.y, dict(data.meta))
        fn = getattr(self.inner, "prepare", None)
        return fn(data) if callable(fn) else data

    def tokenize(self, texts):
        return self.inner.tokenize(self.apply_raw(texts))

    def classify_texts(self, texts, *args, **kwargs):
        """The query interface of discrete text attacks, through the front end."""
        return self.inner.classify_texts(self.apply_raw(texts), *args, **kwargs)

    def forward(self, z: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return self.inner(self.apply(z), ctx)

    def predict(self, inputs: Any) -> torch.Tensor:
        z, ctx = self.encode(inputs)
        return self(z, ctx)

    def describe(self) -> dict[str, Any]:
        t = self.transform
        return {"name": t.name, "key": t.key, "params": dict(self.params), "differentiable": t.differentiable,
                "randomized": t.randomized, "bpda": "identity" if t.bpda is None else "stand-in", "stage": t.stage}


class EOTView(_Delegating, nn.Module):
    """A model seen through EOT: every loss/gradient an attack takes averages ``eot_samples`` forwards
    (:func:`bench.attacks.base.loss_and_grad`); everything else is the model's."""

    def __init__(self, inner: nn.Module, eot_samples: int) -> None:
        super().__init__()
        self.inner = inner
        self.eot_samples = int(eot_samples)

    def forward(self, z, ctx=None):
        return self.inner(z, ctx)


@dataclass(frozen=True)
class Protocol:
    """What the official suite became for this model: ``standard`` (the track's suite as declared),
    ``bpda`` (the suite with BPDA through the transform), ``rand`` (AutoAttack's rand version, EOT) or
    ``rand+bpda``; ``reasons`` are the measured checks and declarations that made the switch."""

    name: str = "standard"
    reasons: tuple[str, ...] = ()
    eot: int = 1
    bpda: bool = False
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reasons": list(self.reasons), "eot": self.eot, "bpda": self.bpda,
                "forced": self.forced}


def choose_protocol(model: TaskModel, checks: Mapping[str, float | None], *, mode: str = "auto") -> Protocol:
    """The evaluation protocol from the pre-attack checks (``zero-gradients``, ``randomized-forward``: their
    measured values) and the transform's declarations. ``mode``: ``auto`` (switch as needed), ``plain``
    (never switch: the naive evaluation, for comparison only)."""
    if mode not in ("auto", "plain"):
        raise UserError(f"--protocol must be auto or plain, got {mode!r}")
    if mode == "plain":
        return Protocol(name="plain", forced=True)
    from bench.sanity import CHECKS

    reasons, rand, bpda = [], False, False
    zg, rf = checks.get("zero-gradients"), checks.get("randomized-forward")
    if rf is not None and rf > CHECKS["randomized-forward"][0]:
        rand = True
        reasons.append(f"randomized-forward {rf:.3f} > {CHECKS['randomized-forward'][0]:g}")
    t = getattr(model, "transform", None)
    if isinstance(t, InputTransform) and t.randomized and not rand:
        rand = True
        reasons.append(f"transform {t.name} declares itself randomized")
    if zg is not None and zg > CHECKS["zero-gradients"][0]:
        bpda = True
        reasons.append(f"zero-gradients {zg:.3f} > {CHECKS['zero-gradients'][0]:g}")
    if isinstance(t, InputTransform) and not t.differentiable and t.stage == "z":
        bpda = True
        reasons.append(f"transform {t.name} declares itself non-differentiable")
    if bpda and not isinstance(model, TransformedModel):
        # zero gradients with no transform to approximate: nothing to substitute, say so
        reasons.append("no declared transform to approximate: BPDA not applicable, suite unchanged")
        bpda = False
    name = "+".join(n for n, on in (("rand", rand), ("bpda", bpda)) if on) or "standard"
    return Protocol(name=name, reasons=tuple(reasons), eot=RAND_EOT if rand else 1, bpda=bpda)


def apply_protocol(model: TaskModel, suite, protocol: Protocol):
    """(model, suite) to evaluate under ``protocol``."""
    if protocol.bpda and isinstance(model, TransformedModel):
        model.bpda = True
    if protocol.eot > 1:
        suite = RAND
    return model, suite


def with_transform(model: TaskModel, spec: str | None, domain: str, *, seed: int = 0) -> TaskModel:
    """``model`` behind the transform named by ``spec`` (``None``: the model itself)."""
    if not spec:
        return model
    t, params = parse_transform(spec, domain)
    return TransformedModel(model, t, params, seed=seed)


__all__ = ["InputTransform", "TransformedModel", "EOTView", "Protocol", "RAND", "register_transform",
           "parse_transform", "choose_protocol", "apply_protocol", "with_transform"]
