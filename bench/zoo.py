"""The published checkpoints: ``zoo/<track>/<model>__<defense>.safetensors`` (+ ``.json``).

Every result file under ``results/`` names the sha256 of the weights it evaluated; the weights
themselves are published here beside it, so anyone can re-evaluate a published number
(RobustBench's ``load_model`` + ``benchmark``):

    model = bench.load_model("zoo:image-mnist5k-linf-0.3/pgd-at")   # or the bare "<track>/<defense>"

The zoo root is the repository's ``zoo/`` (or ``$XROBUST_ZOO``). A checkpoint whose published
result names another sha256 is refused: the weights would not be the ones measured.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bench.checkpoint import load_checkpoint, read_checkpoint_config, sha256_file
from bench.errors import UserError


def zoo_root() -> Path:
    env = os.environ.get("XROBUST_ZOO")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "zoo"


def zoo_path(track_id: str, model: str, defense: str, root: str | Path | None = None) -> Path:
    return Path(root or zoo_root()) / track_id / f"{model}__{defense.replace(':', '_')}.safetensors"


def publish(checkpoint: str | Path, track, root: str | Path | None = None) -> Path:
    """Copy a trained checkpoint (weights + config) into the zoo under its canonical name; returns the weights' path."""
    weights = Path(checkpoint)
    weights = weights / "model.safetensors" if weights.is_dir() else weights.with_suffix(".safetensors")
    config = read_checkpoint_config(weights)
    if config.get("model") != track.model:
        raise UserError(f"checkpoint model {config.get('model')!r} is not the track's model {track.model!r}")
    dest = zoo_path(track.id, track.model, config["recipe"], root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for src, dst in ((weights, dest), (weights.with_suffix(".json"), dest.with_suffix(".json"))):
        if src.resolve() != dst.resolve():
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    assets = weights.with_suffix(".assets")
    if assets.is_dir() and assets.resolve() != dest.with_suffix(".assets").resolve():
        shutil.copytree(assets, dest.with_suffix(".assets"), dirs_exist_ok=True)
    return dest


def published(root: str | Path | None = None) -> list[str]:
    """``<track>/<defense>`` names of every published checkpoint."""
    base = Path(root or zoo_root())
    out = []
    for p in sorted(base.glob("*/*.safetensors")):
        out.append(f"{p.parent.name}/{p.stem.split('__', 1)[-1]}")
    return out


def _published_sha(track, defense: str, results: str | Path | None) -> str | None:
    from bench.results import result_path

    root = results if results is not None else zoo_root().parent / "results"
    path = result_path(root, {**track.result_ids(), "defense": defense})
    try:
        return json.loads(Path(path).read_text())["provenance"].get("checkpoint_sha256")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checked_path(name: str, root: str | Path | None = None, results: str | Path | None = None) -> Path:
    """The weights of the published checkpoint ``<track>/<defense>``, after the sha256 check.

    The sha256 of the weights is checked against the published result of the same
    (track, model, defense) under ``results`` (default: the ``results/`` beside the zoo)
    when there is one.
    """
    from bench.tracks import get_track

    if name.count("/") != 1:
        raise UserError(f"malformed model name {name!r}: expected <track>/<defense>, "
                        f"e.g. image-mnist5k-linf-0.3/pgd-at")
    track_id, defense = name.split("/")
    track = get_track(track_id)
    path = zoo_path(track.id, track.model, defense, root)
    record = path.with_suffix(".json")
    if not path.exists() and record.exists():  # published as a training record: weights too large for git
        weights = _weights_record(record)
        if weights is not None:
            raise UserError(f"checkpoint {name!r} is not in the repository ({weights.get('why', 'too large for git')}); "
                            f"re-make it with: {weights.get('remake', 'xrobust train')} (the published one has "
                            f"sha256 {str(weights.get('sha256', '?'))[:12]}...; {weights.get('made_on', '')})")
    if not path.exists():
        have = [n for n in published(root) if n.startswith(track.id + "/")]
        raise UserError(f"no published checkpoint {name!r} (looked for {path}); published for this track: "
                        f"{', '.join(have) or 'none'}")
    want = _published_sha(track, defense, results)
    if want is not None:
        got = sha256_file(path)
        if got != want:
            raise UserError(f"{path}: sha256 {got[:12]}... differs from the published result's {want[:12]}...")
    return path


def _weights_record(record: Path) -> dict | None:
    try:
        w = json.loads(record.read_text()).get("weights")
    except (OSError, ValueError, AttributeError):
        return None
    return w if isinstance(w, dict) and w.get("in_repository") is False else None


def unpublished_weights(root: str | Path | None = None) -> list[tuple[str, dict]]:
    """``(<track>/<defense>, weights record)`` of published results whose checkpoint is a training record only
    (its ``weights`` say how to re-make it and its sha256), e.g. fine-tuned MiniLM, too large for git."""
    base = Path(root or zoo_root())
    return [(name, _weights_record(base / name.split("/")[0] / f"{stem}.json")) for name, stem in _unpublished_stems(base)]


def _unpublished_stems(base: Path) -> list[tuple[str, str]]:
    """``(<track>/<defense>, file stem)`` of every training record under ``base`` without its weights."""
    out = []
    for rec in sorted(base.glob("*/*.json")):
        if not rec.with_suffix(".safetensors").exists() and _weights_record(rec) is not None:
            out.append((f"{rec.parent.name}/{rec.stem.partition('__')[2]}", rec.stem))
    return out


def load_model(name: str, device: str = "cpu", root: str | Path | None = None,
               results: str | Path | None = None):
    """The published checkpoint ``<track>/<defense>`` as a ready :class:`~bench.task.TaskModel` (eval mode),
    sha256-checked (:func:`checked_path`). ``bench.load_model`` resolves every scheme (``zoo:`` included)."""
    return load_checkpoint(checked_path(name, root, results), device=device).eval()


def catalog(root: str | Path | None = None, results: str | Path | None = None) -> list[dict]:
    """One row per published checkpoint: ``spec`` (``zoo:<track>/<defense>``), track, model, defense, and the
    published result's headline ``metric``, ``clean`` and ``robust`` numbers (``None`` without a result file);
    ``weights`` is False for a training record whose weights are not in the repository (:func:`unpublished_weights`)."""
    from bench.results import result_path
    from bench.tracks import get_track

    base = Path(root or zoo_root())
    res = Path(results) if results is not None else base.parent / "results"
    rows = []
    records = [base / f"{name.split('/')[0]}" / f"{rec}.safetensors"
               for name, rec in _unpublished_stems(base)]
    for p in sorted([*base.glob("*/*.safetensors"), *records]):
        model, _, defense = p.stem.partition("__")
        row = {"spec": f"zoo:{p.parent.name}/{defense}", "track": p.parent.name, "model": model,
               "defense": defense, "metric": None, "clean": None, "robust": None, "weights": p.exists()}
        try:
            track = get_track(p.parent.name)
            doc = json.loads(result_path(res, {**track.result_ids(), "model": model, "defense": defense}).read_text())
            head = doc["headline"]
            row.update(metric=head["robust"], clean=doc["metrics"][head["clean"]],
                       robust=doc["metrics"][head["robust"]])
        except (UserError, OSError, ValueError, KeyError, TypeError):
            pass  # a checkpoint without a (readable) published result is still listed
        rows.append(row)
    return rows
