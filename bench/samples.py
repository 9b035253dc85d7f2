"""Evidence samples: a few adversarial examples a reader can listen to, kept beside the result file.

``xrobust eval ... --samples K`` writes ``<result stem>.samples/`` next to the result file::

    ctc-digits__erm.json
    ctc-digits__erm.samples/
        manifest.json        format xrobust-samples/1 (bench/schema/samples.schema.json)
        <index>/clean.wav    the clean example, as the model saw it
        <index>/adv.wav      the adversarial example the worst case kept for it

``manifest.json`` records the result file it belongs to (name, track, model, defense, threat, checkpoint
sha256, the result's timestamp) and per sample the dataset index, the attack that found it, the achieved
SNR, the reference and the model's outputs on both files (ASR: transcripts; KWS: class names), and the
sha256 of each file. The leaderboard copies valid folders into its site and renders an audio page per
track; ``xrobust validate`` checks them (:func:`sample_problems`). At most :data:`MAX_SAMPLES` per result,
because they are committed to git.

Unlike ``--save-adv`` (:mod:`bench.adversarial`: every kept example, exact floats, for re-verification),
samples are for listening: a handful, rounded to 16-bit PCM. Which few: the kept examples whose clean
output was right first (the clearest demonstrations), then by position in the evaluated set.
What a sample holds is domain code, registered in :data:`bench.registry.SAMPLE_WRITERS` (speech:
:mod:`domains.speech.samples`); bench never imports a domain.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError

FORMAT = "xrobust-samples/1"
MANIFEST = "manifest.json"
SUFFIX = ".samples"
#: samples per result at most (they are committed to git)
MAX_SAMPLES = 10
#: bytes per audio file at most (a 16 kHz 16-bit clip of a minute is ~1.9 MB)
MAX_FILE_BYTES = 4 << 20


def samples_dir(result: str | Path) -> Path:
    """The samples folder of a result file: ``<result stem>.samples`` beside it."""
    return Path(result).with_suffix(SUFFIX)


def result_of(folder: str | Path) -> Path:
    """The result file a samples folder belongs to (``x.samples`` -> ``x.json``)."""
    return Path(folder).with_suffix(".json")


def is_samples_dir(path: str | Path) -> bool:
    return Path(path).name.endswith(SUFFIX)


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


def pick(report, k: int) -> list:
    """Up to ``k`` kept continuous adversarial examples: clean-right ones first, then by position."""
    kept = [ex for ex in (report.adversarial or {}).values() if not ex.discrete]
    clean = report.clean_errors
    return sorted(kept, key=lambda ex: (float(clean[ex.position]) > 0, ex.position))[:k]


def _sha256(path: Path) -> str:
    from bench.checkpoint import sha256_file

    return sha256_file(path)


@torch.no_grad()
def write_samples(report, result: str | Path, k: int, *, track, model, inputs: Any, y: Any,
                  meta: dict[str, Any] | None = None, index: torch.Tensor | None = None,
                  device: str | torch.device | None = None) -> Path | None:
    """Write ``k`` samples of ``report`` (``evaluate(..., keep_adv=True)``) beside the result file ``result``.

    Args:
        report: the evaluation of the first ``report.n`` examples (``inputs``, ``y``: the evaluated data,
            after the model's ``prepare``).
        result: the result file just written (its ids and provenance are recorded).
        model: the evaluated model; the domain writer runs it on both files of each sample.
        meta: the dataset's metadata (e.g. class names, sample rate).
        index: the examples' global ids (``evaluate(index=...)``).

    The folder replaces an earlier one of the same result (it was that result's evidence) and is written
    under a temporary name, so it is either complete or absent. Returns None, and leaves no folder, when
    the worst case kept no continuous example (nothing was broken).
    """
    from bench.data import take, to_device
    from bench.registry import SAMPLE_WRITERS
    from bench.task import as_task_model

    check_samples(k, track)
    if report.adversarial is None:
        raise UserError("the report holds no adversarial examples: evaluate with keep_adv=True")
    result = Path(result)
    folder = samples_dir(result)
    chosen = pick(report, k)
    if not chosen:
        if folder.is_dir():
            shutil.rmtree(folder)
        return None
    doc = json.loads(result.read_text())
    tm = as_task_model(model)
    dev = torch.device(device) if device is not None else next((p.device for p in tm.parameters()),
                                                                 torch.device("cpu"))
    pos = torch.tensor([ex.position for ex in chosen])
    z, ctx = tm.encode(to_device(take(inputs, pos), dev))
    z = z.detach()
    if index is not None:
        ctx = replace(ctx, index=index[pos])
    ctx = ctx.to(dev)
    z_adv = z.clone()
    for i, ex in enumerate(chosen):
        z_adv[i][tuple(slice(0, s) for s in ex.z.shape)] = ex.z.to(z.device, z.dtype)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        paths = []
        for ex in chosen:
            (tmp / str(ex.index)).mkdir()
            paths.append((tmp / str(ex.index) / "clean.wav", tmp / str(ex.index) / "adv.wav"))
        task, rate, described = SAMPLE_WRITERS.get(track.domain)(
            tm, z, z_adv, ctx, take(y, pos), paths, meta=meta or {})
        samples = []
        for ex, (pc, pa), d in zip(chosen, paths, described):
            files = {"clean": pc.relative_to(tmp).as_posix(), "adv": pa.relative_to(tmp).as_posix()}
            samples.append({"index": int(ex.index), "position": int(ex.position), "attack": ex.attack,
                            "snr_db": d["snr_db"], "reference": d["reference"], "clean": d["clean"],
                            "adversarial": d["adversarial"], "clean_errors": float(report.clean_errors[ex.position]),
                            "adv_errors": float(ex.errors), "files": files,
                            "sha256": {role: _sha256(tmp / rel) for role, rel in files.items()}})
        prov = doc.get("provenance") or {}
        manifest = {"format": FORMAT, "result": result.name, "track": doc["track"], "domain": doc["domain"],
                    "model": doc["model"], "defense": doc["defense"], "threat": doc["threat"]["id"],
                    "checkpoint_sha256": prov.get("checkpoint_sha256"), "result_timestamp": prov.get("timestamp"),
                    "task": task, "sample_rate": int(rate), "samples": samples}
        errs = manifest_problems(manifest)
        if errs:  # a writer that breaks the format is a bug, never a folder on disk
            raise RuntimeError(f"sample writer for {track.domain}: {errs[0]}")
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


def manifest_problems(manifest: Any) -> list[str]:
    """Schema problems of a manifest, one line each (``manifest.json: <where>: <message>``)."""
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
        for role, rel in s["files"].items():
            if rel.split("/")[0] != str(s["index"]):
                out.append(f"{MANIFEST}: sample {s['index']}: {role} file {rel} is not in folder {s['index']}/")
    return out


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

    The manifest follows the schema (at most :data:`MAX_SAMPLES` samples); it names the result file beside
    the folder and, given that file's document ``doc``, the same track, model, defense, threat, checkpoint
    and timestamp (samples of an earlier evaluation are stale); every listed file is a regular file (not a
    link) of at most :data:`MAX_FILE_BYTES`, a RIFF/WAVE file, with the recorded sha256; and the folder
    holds nothing else.
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
        for role in ("clean", "adv"):
            rel = s["files"][role]
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
