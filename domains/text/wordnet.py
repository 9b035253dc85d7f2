"""WordNet 3.0 (Miller 1995; Fellbaum 1998) for the text attacks, offline.

Where the data comes from, first found wins:

1. whatever NLTK finds itself (``nltk.download('wordnet')``, ``$NLTK_DATA``):
   the canonical route for a user who has it;
2. the project cache, ``<cache>/nltk_data/corpora/wordnet/``, written by
   ``xrobust data fetch wordnet``: Debian's ``wordnet-base`` and
   ``wordnet-sense-index`` packages (WordNet 3.0, Debian version
   ``1:3.0-37``) taken with ``apt-get download``, sha256-checked against
   the pins below, unpacked with ``dpkg -x`` (nothing is installed);
3. Debian's installed copy, ``/usr/share/wordnet`` (``apt-get install
   wordnet-base wordnet-sense-index``, as CI does), copied into the same
   cache layout on first use.

NLTK's reader needs a ``lexnames`` file that Debian does not ship; it is
written from the list of the 45 lexicographer files in the ``lexnames(5WN)``
manual page (number, name, syntactic category 1-4 = noun, verb, adjective,
adverb). When none of the three is there, :func:`wordnet` raises
:class:`~bench.errors.DataMissingError` naming the fetch command.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS
from bench.wheeldata import cache_dir

FETCH = "xrobust data fetch wordnet"
DEBIAN_VERSION = "1:3.0-37"
#: sha256 of the .deb files of Debian's WordNet 3.0 packages, version 1:3.0-37 (bookworm), as downloaded
DEBS = {
    "wordnet-base": "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
    "wordnet-sense-index": "b22c7d3100470d90f812acc224718e4bd362d7ca427766fa3e11013c8c7895cf",
}
SYSTEM_DIR = Path("/usr/share/wordnet")
#: the database files NLTK's WordNetCorpusReader opens (besides ``lexnames``)
FILES = ("adj.exc", "adv.exc", "cntlist.rev", "data.adj", "data.adv", "data.noun", "data.verb", "index.adj",
         "index.adv", "index.noun", "index.sense", "index.verb", "noun.exc", "verb.exc")
#: the lexicographer files in number order, from lexnames(5WN)
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def lexnames_text() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line."""
    return "".join(f"{i:02d}\t{n}\t{_CATEGORY[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES))


def nltk_root() -> Path:
    """The NLTK data root the project writes: ``<cache>/nltk_data`` (WordNet under ``corpora/wordnet``)."""
    return cache_dir() / "nltk_data"


def _complete(folder: Path) -> bool:
    return all((folder / f).exists() for f in FILES + ("lexnames",))


def _assemble(source: Path) -> Path:
    """Copy ``source``'s database files (35 MB) into the layout NLTK expects, with ``lexnames``; atomic (temp
    folder + rename). Copied, not linked: NLTK's reader refuses a link that leads out of its data root."""
    missing = [f for f in FILES if not (source / f).exists()]
    if missing:
        raise UserError(f"{source} is not a WordNet 3.0 database folder (missing {', '.join(missing)})")
    out = nltk_root() / "corpora" / "wordnet"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    tmp.chmod(0o755)
    try:
        for f in FILES:
            shutil.copy2(source / f, tmp / f)
        (tmp / "lexnames").write_text(lexnames_text())
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def fetch_wordnet(root: str | None = None) -> str:
    """``apt-get download`` the two Debian packages, check their sha256, ``dpkg -x`` them into the cache."""
    out = nltk_root() / "corpora" / "wordnet"
    if _complete(out):
        return str(out)
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DataMissingError("fetching WordNet needs Debian's apt-get and dpkg; or install it with NLTK: "
                               "python -c \"import nltk; nltk.download('wordnet')\"")
    with tempfile.TemporaryDirectory(dir=cache_dir() if cache_dir().exists() else None) as tmp:
        pkgs = [f"{p}={DEBIAN_VERSION}" for p in DEBS]
        proc = subprocess.run(["apt-get", "download", *pkgs], cwd=tmp, capture_output=True, text=True)
        debs = sorted(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != len(DEBS):
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no .deb downloaded"
            raise DataMissingError(f"apt-get download {' '.join(pkgs)} failed ({last}); run apt-get update first")
        unpacked = Path(tmp) / "root"
        for deb in debs:
            name = deb.name.split("_")[0]
            digest = hashlib.sha256(deb.read_bytes()).hexdigest()
            if DEBS.get(name) != digest:
                raise UserError(f"{deb.name}: sha256 {digest} does not match the pinned {DEBS.get(name)}")
            subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True, capture_output=True)
        return str(_assemble(unpacked / "usr" / "share" / "wordnet"))


def nltk_has_wordnet() -> bool:
    """Whether NLTK finds a WordNet of its own (``nltk.download('wordnet')``, ``$NLTK_DATA``), before the
    project's cache joins its data roots."""
    import nltk

    own = [p for p in nltk.data.path if str(p) != str(nltk_root())]  # wordnet() adds the cache root
    try:
        nltk.data.find("corpora/wordnet", paths=own)
        return True
    except LookupError:
        return False


def wordnet_root() -> tuple[str, Path | None]:
    """Where WordNet is: ``("nltk", None)`` when NLTK finds it itself, else ``("cache", root)``."""
    if nltk_has_wordnet():
        return "nltk", None
    folder = nltk_root() / "corpora" / "wordnet"
    if not _complete(folder) and _complete_system():
        _assemble(SYSTEM_DIR)
    if _complete(folder):
        return "cache", nltk_root()
    raise DataMissingError(f"WordNet is not installed (not found by NLTK, in {folder} or {SYSTEM_DIR}); run: {FETCH}")


def _complete_system() -> bool:
    return all((SYSTEM_DIR / f).exists() for f in FILES)


@functools.lru_cache(maxsize=1)
def wordnet():
    """NLTK's WordNet reader over the first copy found (see the module docstring)."""
    try:
        import nltk
    except ImportError:
        raise UserError("the text attacks need NLTK: pip install nltk") from None
    kind, root = wordnet_root()
    if kind == "nltk":
        from nltk.corpus import wordnet as wn

        wn.synsets("good")  # load now, so a broken copy fails here
        return wn
    import warnings

    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if str(root) not in nltk.data.path:  # NLTK reads only below its data roots
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # "multilingual functions are not available": English only, as intended
        warnings.simplefilter("ignore")
        return WordNetCorpusReader(str(root / "corpora" / "wordnet"), None)


def _not_a_dataset(split: str = "train", root: str | None = None):
    raise UserError("wordnet is a lexical database for the text attacks (pwws, deepwordbug), not a classification "
                    f"data set; '{FETCH}' installs it")


_not_a_dataset.fetch = fetch_wordnet
DATASETS.register("wordnet", _not_a_dataset)
