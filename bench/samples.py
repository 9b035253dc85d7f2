"""Evidence samples: a few adversarial examples a reader can listen to or read, kept beside the result file.

``xrobust eval ... --samples K`` writes ``<result stem>.samples/`` next to the result file::

    ctc-digits__erm.json
    ctc-digits__erm.samples/
        manifest.json        format xrobust-samples/1 (bench/schema/samples.schema.json)
        <index>/clean.wav    audio: the clean example, as the model saw it
        <index>/adv.wav      audio: the adversarial example the worst case kept for it

``manifest.json`` records the result file it belongs to (name, track, model, defense, threat, checkpoint
sha256, the result's timestamp), its ``kind`` and per sample the dataset index and the attack that found
it, then what the kind holds:

* ``audio`` (speech; the default of manifests written before ``kind`` existed): the achieved SNR, the
  reference and the model's outputs on both files (ASR: transcripts; KWS: class names), and the sha256
  of each file;
* ``text`` (text classification; no files, the folder holds only the manifest): the original and the
  adversarial text, each changed word with its word index and character offsets in both texts, the
  word budget, the true label, the predictions and true-class probabilities before and after, and the
  sentence similarity when the attack measured it. Only discrete attacks' examples have a text form
  (an embedding-space example has none): when the worst case kept none of them, the manifest has no
  samples and a ``note`` that says so.

The leaderboard copies valid folders into its site and renders an audio or a text-examples page per
track; ``xrobust validate`` checks them (:func:`sample_problems`). At most :data:`MAX_SAMPLES` per
result, because they are committed to git.

Unlike ``--save-adv`` (:mod:`bench.adversarial`: every kept example, exact floats, for re-verification),
samples are for people: a handful, audio rounded to 16-bit PCM. Which few: the kept examples whose clean
output was right first (the clearest demonstrations), then by position in the evaluated set.
What a sample holds is domain code, a :class:`SampleWriter` registered in
:data:`bench.registry.SAMPLE_WRITERS` (speech: :mod:`domains.speech.samples`, text:
:mod:`domains.text.samples`); bench never imports a domain.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch

from bench.errors import UserError

FORMAT = "xrobust-samples/1"
MANIFEST = "manifest.json"
SUFFIX = ".samples"
#: samples per result at most (they are committed to git)
MAX_SAMPLES = 10
#: bytes per audio file at most (a 16 kHz 16-bit clip of a minute is ~1.9 MB)
MAX_FILE_BYTES = 4 << 20
#: what a manifest without ``kind`` holds (written before text samples existed)
DEFAULT_KIND = "audio"


@dataclass
class SampleJob:
    """What a :class:`SampleWriter` is given: the chosen kept examples and the evaluated data around them.

    ``inputs`` / ``y``: the chosen examples' inputs and labels (after the model's ``prepare``), in the
    order of ``chosen``; ``index``: their global ids; ``folder``: where files go (``<index>/...``);
    ``suite``: the evaluation's attack specs (e.g. to read an attack's budget).
    """

    model: Any
    chosen: list
    inputs: Any
    y: Any
    index: torch.Tensor
    folder: Path
    meta: dict[str, Any]
    device: torch.device
    suite: tuple = ()


@dataclass(frozen=True)
class SampleWriter:
    """A domain's evidence samples, registered in :data:`bench.registry.SAMPLE_WRITERS` under the domain.

    Attributes:
        kind: what the manifest holds (``audio`` / ``text``: its schema section and the site page).
        write: ``job -> (header, samples)``: the manifest's kind-specific top-level fields and one dict per
            chosen example (bench adds index, position, attack and the errors; files a sample lists under
            ``files`` get their sha256). Called with no chosen example too (the manifest then says why).
        discrete: which kept examples it can show: discrete attacks' records (text) or continuous tensors.
        check: ``manifest -> problems``: the domain's own model-free checks of a schema-valid manifest
            (e.g. the recorded word changes are the tokenizer's), one line each.
    """

    kind: str
    write: Callable[[SampleJob], tuple[dict[str, Any], list[dict[str, Any]]]]
    discrete: bool = False
    check: Callable[[dict[str, Any]], list[str]] | None = None


def samples_dir(result: str | Path) -> Path:
    """The samples folder of a result file: ``<result stem>.samples`` beside it."""
    return Path(result).with_suffix(SUFFIX)


def result_of(folder: str | Path) -> Path:
    """The result file a samples folder belongs to (``x.samples`` -> ``x.json``)."""
    return Path(folder).with_suffix(".json")


def is_samples_dir(path: str | Path) -> bool:
    return Path(path).name.endswith(SUFFIX)


def kind_of(manifest: dict[str, Any]) -> str:
    """A manifest's kind (``audio`` when it predates the field)."""
    return manifest.get("kind", DEFAULT_KIND)


def check_samples(k: int, track) -> None:
    """Fail in one line, before any attack, on a sample count or track that cannot have samples."""
    from bench.registry import SAMPLE_WRITERS

    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SAMPLES:
        raise UserError(f"--samples must be between 1 and {MAX_SAMPLES} (they are committed to git), got {k!r}")
    if track.kind != "attack":
        raise UserError(f"--samples: {track.id} is a {track.kind} track; samples are adversarial examples")
    if track.domain not in SAMPLE_WRITERS.names():
        raise UserError(f"--samples: the {track.domain} domain has no sample writer "
                        f"(domains with one: {', '.join(SAMPLE_WRITERS.names()) or 'none'})")


def pick(report, k: int, discrete: bool = False) -> list:
    """Up to ``k`` kept adversarial examples of one sort (continuous tensors, or with ``discrete`` the records
    of discrete attacks): clean-right ones first, then by position."""
    kept = [ex for ex in (report.adversarial or {}).values() if ex.discrete == discrete]
    clean = report.clean_errors
    return sorted(kept, key=lambda ex: (float(clean[ex.position]) > 0, ex.position))[:k]


def continuous_batch(job: SampleJob) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``(z, z_adv, ctx)`` of a job's continuous examples: the clean encoding and, over its leading corner
    (each example's own shape), the kept adversarial tensor."""
    from bench.data import to_device

    z, ctx = job.model.encode(to_device(job.inputs, job.device))
    z = z.detach()
    ctx = replace(ctx, index=job.index).to(job.device)
    z_adv = z.clone()
    for i, ex in enumerate(job.chosen):
        z_adv[i][tuple(slice(0, s) for s in ex.z.shape)] = ex.z.to(z.device, z.dtype)
    return z, z_adv, ctx


def _sha256(path: Path) -> str:
    from bench.checkpoint import sha256_file

    return sha256_file(path)


def _none_note(report, writer: SampleWriter) -> str:
    others = sorted({ex.attack for ex in (report.adversarial or {}).values()})
    sort = "a discrete attack's (e.g. word substitution)" if writer.discrete else "a continuous attack's"
    return (f"no {writer.kind} sample: the worst case kept {len(report.adversarial or {})} adversarial example(s), "
            f"none of them {sort} (found by: {', '.join(others)}); they have no {writer.kind} form")


@torch.no_grad()
def write_samples(report, result: str | Path, k: int, *, track, model, inputs: Any, y: Any,
                  meta: dict[str, Any] | None = None, index: torch.Tensor | None = None,
                  device: str | torch.device | None = None) -> Path | None:
    """Write ``k`` samples of ``report`` (``evaluate(..., keep_adv=True)``) beside the result file ``result``.

    Args:
        report: the evaluation of the first ``report.n`` examples (``inputs``, ``y``: the evaluated data,
            after the model's ``prepare``).
        result: the result file just written (its ids and provenance are recorded).
        model: the evaluated model; the domain writer runs it on both sides of each sample.
        meta: the dataset's metadata (e.g. class names, sample rate).
        index: the examples' global ids (``evaluate(index=...)``).

    The folder replaces an earlier one of the same result (it was that result's evidence) and is written
    under a temporary name, so it is either complete or absent. Returns None, and leaves no folder, when
    the worst case kept no example at all (nothing was broken); when it kept some, but none of the sort the
    domain's writer shows (text: only discrete attacks' examples have a text form), the manifest has no
    samples and a ``note`` saying so.
    """
    from bench.data import take
    from bench.registry import SAMPLE_WRITERS
    from bench.task import as_task_model

    check_samples(k, track)
    if report.adversarial is None:
        raise UserError("the report holds no adversarial examples: evaluate with keep_adv=True")
    writer = SAMPLE_WRITERS.get(track.domain)
    result = Path(result)
    folder = samples_dir(result)
    chosen = pick(report, k, writer.discrete)
    if not report.adversarial:
        if folder.is_dir():
            shutil.rmtree(folder)
        return None
    doc = json.loads(result.read_text())
    tm = as_task_model(model)
    dev = torch.device(device) if device is not None else next((p.device for p in tm.parameters()),
                                                                 torch.device("cpu"))
    pos = torch.tensor([ex.position for ex in chosen], dtype=torch.long)
    gidx = index[pos] if index is not None else pos.clone()
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        for ex in chosen:
            (tmp / str(ex.index)).mkdir()
        job = SampleJob(tm, chosen, take(inputs, pos), take(y, pos), gidx, tmp, dict(meta or {}), dev,
                        tuple(report.suite))
        header, described = writer.write(job)
        samples = []
        for ex, d in zip(chosen, described):
            s = {"index": int(ex.index), "position": int(ex.position), "attack": ex.attack, **d,
                 "clean_errors": float(report.clean_errors[ex.position]), "adv_errors": float(ex.errors)}
            if "files" in d:
                s["sha256"] = {role: _sha256(tmp / rel) for role, rel in d["files"].items()}
            samples.append(s)
        prov = doc.get("provenance") or {}
        manifest = {"format": FORMAT, "kind": writer.kind, "result": result.name, "track": doc["track"],
                    "domain": doc["domain"], "model": doc["model"], "defense": doc["defense"],
                    "threat": doc["threat"]["id"], "checkpoint_sha256": prov.get("checkpoint_sha256"),
                    "result_timestamp": prov.get("timestamp"), **header, "samples": samples}
        if not chosen:
            manifest["note"] = _none_note(report, writer)
        errs = manifest_problems(manifest)
        if errs:  # a writer that breaks the format is a bug, never a folder on disk
            raise RuntimeError(f"sample writer for {track.domain}: {errs[0]}")
        for d in tmp.iterdir():  # folders of samples without files (text) are not left empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        for f in tmp.rglob("*"):
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        os.chmod(tmp, 0o755)  # mkdtemp's folder is private
        if folder.is_dir():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(resources.files("bench").joinpath("schema/samples.schema.json").read_text())


def text_sample_problems(s: dict[str, Any]) -> list[str]:
    """Model-free checks of one (schema-valid) text sample, one line each: the recorded changes, applied to
    the original at their offsets, give exactly the adversarial text (so neither text nor change list can
    be edited alone); they are ordered, do not overlap and each changes something; there are at most
    ``budget`` of them (when recorded) and at most ``words``; the predictions agree with the recorded errors
    (wrong exactly where errors > 0) and with the true-class probabilities (above 1/2: right)."""
    out, where = [], f"sample {s['index']}"
    orig, adv = s["original"], s["adversarial"]
    built, at, shift = [], 0, 0
    for c in s["changes"]:
        start, old, new = c["start"], c["old"], c["new"]
        if start < at:
            out.append(f"{MANIFEST}: {where}: change of word {c['word']} overlaps or precedes the one before it")
            return out
        if old == new:
            out.append(f"{MANIFEST}: {where}: change of word {c['word']} changes nothing ({old!r})")
        if orig[start:start + len(old)] != old:
            out.append(f"{MANIFEST}: {where}: the original has no {old!r} at character {start}")
            return out
        if c["adv_start"] != start + shift:
            out.append(f"{MANIFEST}: {where}: change of word {c['word']} is at character {c['adv_start']} of the "
                       f"adversarial text, the original's offsets put it at {start + shift}")
        built += [orig[at:start], new]
        at, shift = start + len(old), shift + len(new) - len(old)
    built.append(orig[at:])
    if "".join(built) != adv:
        out.append(f"{MANIFEST}: {where}: the recorded changes do not turn the original into the adversarial "
                   "text (one of them was edited)")
    n = len(s["changes"])
    if s.get("budget") is not None and n > s["budget"]:
        out.append(f"{MANIFEST}: {where}: {n} words changed, more than the budget of {s['budget']}")
    if n > s["words"]:
        out.append(f"{MANIFEST}: {where}: {n} words changed of a text of {s['words']} words")
    for side, err in (("clean", "clean_errors"), ("adversarial", "adv_errors")):
        if err in s and (s[f"{side}_prediction"] != s["label"]) != (s[err] > 0):
            out.append(f"{MANIFEST}: {where}: {side} prediction {s[f'{side}_prediction']!r} against label "
                       f"{s['label']!r} disagrees with {err} = {s[err]}")
        p = s[f"{side}_true_prob"]
        if p > 0.5 and s[f"{side}_prediction"] != s["label"]:
            out.append(f"{MANIFEST}: {where}: true-class probability {p:.3f} on the {side} text, yet it "
                       f"predicts {s[f'{side}_prediction']!r}")
    return out


def manifest_problems(manifest: Any) -> list[str]:
    """Problems of a manifest, one line each (``manifest.json: <where>: <message>``): the schema first, then
    what it cannot say (indexes appear once, files lie in their sample's folder, text samples'
    :func:`text_sample_problems`), then the domain writer's own ``check``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    out = []
    for err in sorted(validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{MANIFEST}: {where}: {err.message}")
    if out:
        return out
    seen: set[int] = set()
    for s in manifest["samples"]:
        if s["index"] in seen:
            out.append(f"{MANIFEST}: index {s['index']} appears twice")
        seen.add(s["index"])
        for role, rel in s.get("files", {}).items():
            if rel.split("/")[0] != str(s["index"]):
                out.append(f"{MANIFEST}: sample {s['index']}: {role} file {rel} is not in folder {s['index']}/")
        if kind_of(manifest) == "text":
            out += text_sample_problems(s)
    if out:
        return out
    from bench.registry import SAMPLE_WRITERS

    if manifest["domain"] not in SAMPLE_WRITERS.names():
        return [f"{MANIFEST}: domain {manifest['domain']!r} has no sample writer, so its samples cannot be checked"]
    writer = SAMPLE_WRITERS.get(manifest["domain"])
    if writer.kind != kind_of(manifest):
        return [f"{MANIFEST}: kind is {kind_of(manifest)!r}, the {manifest['domain']} domain's samples are "
                f"{writer.kind!r}"]
    return list(writer.check(manifest)) if writer.check is not None else []


def read_manifest(folder: str | Path) -> tuple[Any, list[str]]:
    """``(manifest, problems)``: the parsed manifest (None when unreadable) and why it cannot be used."""
    path = Path(folder) / MANIFEST
    if path.is_symlink() or not path.is_file():
        return None, [f"{MANIFEST}: missing"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [f"{MANIFEST}: not valid JSON ({exc})"]
    return manifest, manifest_problems(manifest)


def sample_problems(folder: str | Path, doc: dict[str, Any] | None = None) -> list[str]:
    """Every problem of a samples folder (empty when valid), one line each.

    The manifest is valid (:func:`manifest_problems`: the schema, at most :data:`MAX_SAMPLES` samples, and
    what can be re-checked without a model); it names the result file beside the folder and, given that
    file's document ``doc``, the same track, model, defense, threat, checkpoint and timestamp (samples of
    an earlier evaluation are stale); every listed file is a regular file (not a link) of at most
    :data:`MAX_FILE_BYTES`, a RIFF/WAVE file, with the recorded sha256; and the folder holds nothing else.
    """
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return ["not a folder"]
    manifest, out = read_manifest(folder)
    if out:
        return out
    want = result_of(folder).name
    if manifest["result"] != want:
        out.append(f"{MANIFEST}: result is {manifest['result']!r}, the folder belongs to {want!r}")
    if doc is not None:
        prov = doc.get("provenance") or {}
        have = {"track": doc.get("track"), "domain": doc.get("domain"), "model": doc.get("model"),
                "defense": doc.get("defense"), "threat": (doc.get("threat") or {}).get("id"),
                "checkpoint_sha256": prov.get("checkpoint_sha256"), "result_timestamp": prov.get("timestamp")}
        for key, value in have.items():
            if manifest.get(key) is not None and value is not None and manifest[key] != value:
                out.append(f"{MANIFEST}: {key} is {manifest[key]!r}, the result file's is {value!r} "
                           "(samples of another evaluation)")
    listed = {MANIFEST}
    for s in manifest["samples"]:
        for role, rel in s.get("files", {}).items():
            listed.add(rel)
            path = folder / rel
            if path.is_symlink() or not path.is_file():
                out.append(f"{rel}: missing")
                continue
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                out.append(f"{rel}: {size} bytes, more than the {MAX_FILE_BYTES} a sample may have")
                continue
            with open(path, "rb") as f:
                head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                out.append(f"{rel}: not a WAV file")
            got = _sha256(path)
            if got != s["sha256"][role]:
                out.append(f"{rel}: sha256 {got[:12]}... does not match the manifest's {s['sha256'][role][:12]}... "
                           "(the file was changed)")
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).as_posix()
        if f.is_symlink() or (not f.is_dir() and rel not in listed):
            out.append(f"{rel}: not listed in {MANIFEST} (a samples folder holds only its manifest and files)")
    return out
