"""
Which architecture a checkout has: its base among the known versions of the real nanochat, found by itself
when no card is named.

1. From its git history: the newest commit of upstream's history that the checkout has (a fork made with git
   carries upstream's commits), and the card of the architecture at that commit.
2. Else from its code: a nanochat/gpt.py byte-identical to a known version's (its git blob hash) is that
   version; else the known version whose gpt.py differs from it by the fewest lines, stated as a guess.

A base newer than the newest known version gets the newest, with a note. The index (cards/upstream.json) is
facts of upstream's history, written by maintenance/upstream_index.py; it holds no code.

Which card a run verifies against (`choose_card`), in order: `--architecture`; the project's
[tool.nanochat-verify] architecture, for the project's own implementation; the base found for a checkout;
the default card. Every choice comes with the sentence that says how it was made, for the pytest header and the
report.
"""

import hashlib
import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nanochat_verify.paths import CARDS_DIR

INDEX = CARDS_DIR / "upstream.json"
GIT_TIMEOUT = 10  # seconds for `git rev-list`


def line_hashes(source):
    """Hashes of the lines of a gpt.py that carry code: stripped, blank and comment-only lines left out."""
    out = []
    for line in source.splitlines():
        text = " ".join(line.split())
        if text and not text.startswith("#"):
            out.append(hashlib.sha1(text.encode()).hexdigest()[:10])
    return out


def git_blob(data):
    """The git blob hash of a file's bytes (as `git hash-object` computes it)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Base:
    version: str  # the upstream commit (7 hex digits) whose card applies
    how: str  # the sentence that says how it was found
    guess: bool = False

    @property
    def card(self):
        return f"nanochat-{self.version}"


class Index:
    """The facts of cards/upstream.json."""

    def __init__(self, data):
        self.versions = data["versions"]
        self.commits = data["commits"]  # full hash -> [date, gpt.py blob, card version]
        self.blobs = {}
        for commit, (date, blob, version) in self.commits.items():
            self.blobs.setdefault(blob, (commit, version))
        self.lines, running = {}, Counter()
        for v in self.versions:
            running = running + Counter(data["lines"][v]["+"]) - Counter(data["lines"][v]["-"])
            self.lines[v] = running

    @classmethod
    def load(cls):
        return cls(json.loads(INDEX.read_text()))

    @property
    def newest(self):
        return self.versions[-1]

    def date(self, version):
        return next(d for c, (d, _, v) in self.commits.items() if c.startswith(version))

    def newer_note(self, version):
        return (f"; the newest version the kit knows is {self.newest} ({self.date(self.newest)}): a newer base is "
                f"verified under its card" if version == self.newest else "")


def git_history(root):
    """The commits of the checkout at `root`, newest first, or [] (no git, not a repository, too slow)."""
    if not (Path(root) / ".git").exists():
        return []
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-list", "HEAD"], capture_output=True, text=True,
                             timeout=GIT_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.split() if out.returncode == 0 else []


def find_base(gpt_file, index=None):
    """The Base of the checkout holding `gpt_file` (its nanochat/gpt.py), or None when nothing can be said."""
    index = index or Index.load()
    gpt_file = Path(gpt_file)
    root = gpt_file.parent.parent
    for commit in git_history(root):
        if commit in index.commits:
            date, _, version = index.commits[commit]
            return Base(version, f"found from its git history: its newest upstream commit is {commit[:7]} ({date}), "
                                 f"architecture of {version}" + index.newer_note(version))
    data = gpt_file.read_bytes()
    match = index.blobs.get(git_blob(data))
    if match:
        commit, version = match
        return Base(version, f"found from its code: its gpt.py is byte-identical to upstream {version}'s"
                             + index.newer_note(version))
    mine = Counter(line_hashes(data.decode(errors="replace")))
    distance = {v: sum(((mine - theirs) + (theirs - mine)).values()) for v, theirs in index.lines.items()}
    # the nearest; among equally near ones, the newest
    version = min(reversed(index.versions), key=lambda v: distance[v])
    return Base(version, f"a guess from its code: its gpt.py is nearest to upstream {version}'s "
                         f"({distance[version]} lines differ); name its card with --architecture, or in "
                         f"[tool.nanochat-verify] of its pyproject.toml" + index.newer_note(version), guess=True)


def is_checkout_model(path):
    """Whether `path` is a checkout's nanochat/gpt.py (a package folder named nanochat with __init__.py)."""
    path = Path(path)
    return path.name == "gpt.py" and path.parent.name == "nanochat" and (path.parent / "__init__.py").is_file()


def choose_card(settings, impl_path, architecture=None, project_default=None):
    """(the Architecture, how it was chosen) for a run of the implementation at `impl_path` (its source file) in the
    project of `settings`; `architecture`: an --architecture option; `project_default`: the project's own
    implementation's source file (whose card the project's settings name)."""
    from nanochat_verify.card import DEFAULT_CARD, project_card
    if architecture:
        return project_card(settings, architecture), f"card {architecture} named by --architecture"
    own = project_default is not None and Path(impl_path).resolve() == Path(project_default).resolve()
    if own and settings.architecture:
        return project_card(settings), f"card {settings.architecture} named by [tool.nanochat-verify] " \
                                       f"of the project's pyproject.toml"
    if is_checkout_model(impl_path) and INDEX.is_file():
        base = find_base(impl_path)
        overrides = settings if own else type(settings)(settings.root)  # a project's overrides are for its own
        return project_card(overrides, base.card), base.how
    if own or settings.architecture is None:
        return project_card(settings, DEFAULT_CARD), f"the default card {DEFAULT_CARD} (no base to find)"
    return project_card(settings), f"card {settings.architecture} of the project's [tool.nanochat-verify]"
