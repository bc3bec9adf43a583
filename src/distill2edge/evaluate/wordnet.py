"""WordNet for METEOR without nltk's downloader.

nltk's `meteor_score` needs a WordNet corpus reader. Its data normally comes from `nltk.download`,
which cannot reach its server from the project's machines, so the reader is built, in this order,
from:

1. nltk's own `corpora/wordnet` when it is installed (a developer machine that has it);
2. `$DISTILL2EDGE_WORDNET_DIR`, or Debian's WordNet 3.0 files in /usr/share/wordnet (packages
   `wordnet-base` and `wordnet-sense-index`; scripts/setup.sh installs them).

Debian's folder lacks the `lexnames` file nltk reads at start-up, and nltk only opens files below
the roots in `nltk.data.path` (and refuses symlinks and hard links that could lead out of them), so the
database files (27 MB) are copied once into `<cache>/nltk_data/corpora/wordnet`, `lexnames` is written beside them from the list in WordNet's
lexnames(5WN) manual page, and that root is added to `nltk.data.path`.
"""

from __future__ import annotations

import os
import shutil
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from distill2edge.evaluate.registry import MetricUnavailableError

DEBIAN_WORDNET = Path("/usr/share/wordnet")
INSTALL_HINT = (
    "install WordNet 3.0 with `apt-get install wordnet-base wordnet-sense-index` (scripts/setup.sh does), "
    "or set DISTILL2EDGE_WORDNET_DIR to a folder holding WordNet 3.0's database files"
)

_DB_FILES = (
    "data.adj", "data.adv", "data.noun", "data.verb", "index.adj", "index.adv", "index.noun",
    "index.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc", "index.sense",
)
_OPTIONAL_FILES = ("cntlist.rev",)
# WordNet 3.0's 45 lexicographer files, numbered as in lexnames(5WN).
_LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def lexnames_text() -> str:
    """The `lexnames` file: index, lexicographer file name, syntactic category number."""
    return "".join(f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES))


def wordnet_dir() -> Path:
    """The folder holding WordNet's database files: $DISTILL2EDGE_WORDNET_DIR, else Debian's wordnet-base."""
    env = os.environ.get("DISTILL2EDGE_WORDNET_DIR")
    candidates = [Path(env).expanduser()] if env else [DEBIAN_WORDNET]
    for folder in candidates:
        missing = [f for f in _DB_FILES if not (folder / f).is_file()]
        if not missing:
            return folder
        if folder.exists() or env:
            raise MetricUnavailableError(
                f"METEOR needs WordNet: {folder} lacks {', '.join(missing)}; {INSTALL_HINT}"
            )
    raise MetricUnavailableError(f"METEOR needs WordNet, which was not found; {INSTALL_HINT}")


def _nltk_root(source: Path) -> Path:
    """`<cache>/nltk_data` holding corpora/wordnet built from `source` (built once, atomically)."""
    from distill2edge.atomic import file_lock, write_dir_atomic
    from distill2edge.models import cache_dir

    root = cache_dir() / "nltk_data"
    final = root / "corpora" / "wordnet"
    if (final / "lexnames").is_file():
        return root

    def write(tmp: Path) -> None:
        for name in (*_DB_FILES, *_OPTIONAL_FILES):
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_text(), encoding="utf-8")

    with file_lock(root / ".wordnet.lock"):
        if not (final / "lexnames").is_file():
            write_dir_atomic(final, write)
    return root


@lru_cache(maxsize=1)
def wordnet_reader() -> Any:
    """An nltk `WordNetCorpusReader` (loading takes a few seconds; built once per process)."""
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet
    except LookupError:
        pass
    root = _nltk_root(wordnet_dir())
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    with warnings.catch_warnings():  # "multilingual functions are not available": not needed here
        warnings.simplefilter("ignore")
        return WordNetCorpusReader(str(root / "corpora" / "wordnet"), None)
