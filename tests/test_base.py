"""Finding a checkout's base among the known versions of the real nanochat when no card is named: from its git
history, else from its code (byte-identical, or the nearest version, stated as a guess), the newest known with a
note; and which card a run verifies against, said in the pytest header."""

import json
import shutil
import subprocess

import pytest

from nanochat_verify import base
from nanochat_verify.paths import OWN_MODEL, SOURCE_ROOT
from nanochat_verify.settings import Settings

pytestmark = [pytest.mark.tooling, pytest.mark.component("tooling.base")]
INDEX = base.Index.load()
SHARED = SOURCE_ROOT.parent / "shared" if SOURCE_ROOT else None
needs_shared = pytest.mark.skipif(SHARED is None or not (SHARED / "upstream" / "commits.tsv").is_file(),
                                  reason="needs ../shared/upstream beside the checkout (the real nanochat, test data)")


def checkout(folder, source):
    (folder / "nanochat").mkdir(parents=True)
    (folder / "nanochat" / "__init__.py").write_text("")
    (folder / "nanochat" / "gpt.py").write_text(source)
    return folder / "nanochat" / "gpt.py"


def version_source(version):
    """A version's gpt.py, rebuilt from the index's line hashes is not possible: use the real one (test data)."""
    return (SHARED / "upstream" / f"nanochat-{version}" / "nanochat" / "gpt.py").read_text()


def test_the_index_knows_every_upstream_commit_and_maps_each_to_a_card():
    """Every commit of upstream's history names the card of the architecture it has; every such card exists."""
    from nanochat_verify.card import card_names
    assert len(INDEX.commits) >= 400 and set(INDEX.versions) <= {n.removeprefix("nanochat-") for n in card_names()}
    assert {version for _, _, version in INDEX.commits.values()} == set(INDEX.versions)


@needs_shared
def test_the_shipped_index_is_what_the_real_history_gives():
    """cards/upstream.json is up to date with ../shared/upstream (maintenance/upstream_index.py --check)."""
    proc = subprocess.run(["python", str(SOURCE_ROOT / "maintenance" / "upstream_index.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_shared
@pytest.mark.parametrize("version", ["3a5e0bc", "1076f97", "92d63d4"])
def test_a_byte_identical_gpt_py_is_that_version(tmp_path, version):
    """A checkout whose gpt.py is a known version's, byte for byte, gets that version's card, not as a guess."""
    found = base.find_base(checkout(tmp_path, version_source(version)))
    assert (found.version, found.guess) == (version, False) and "byte-identical" in found.how


@needs_shared
def test_a_changed_gpt_py_gets_the_nearest_version_as_a_guess(tmp_path):
    """A gpt.py a fork edited in a few places is matched to the version it differs least from, and says it is a
    guess, with the number of lines that differ and how to name a card."""
    source = version_source("a088b7a").replace("LOGIT_SOFTCAP", "MY_SOFTCAP") + "\nMY_EXTRA = 1\n"
    found = base.find_base(checkout(tmp_path, source))
    assert found.guess and found.version in ("306bc38", "a088b7a") and "lines differ" in found.how
    assert "--architecture" in found.how


def test_a_git_history_with_an_upstream_commit_is_the_first_clue(tmp_path, monkeypatch):
    """A checkout made with git carries upstream's commits: the newest of them decides the base, whatever the code
    says (here a gpt.py nearest to nothing known)."""
    if shutil.which("git") is None:
        pytest.skip("needs git on the PATH")
    gpt = checkout(tmp_path, "print('a fork of my own')\n")
    run = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True,  # noqa: E731
                                       text=True).stdout.strip()
    run("init", "-q")
    run("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "fork")
    head = run("rev-parse", "HEAD")
    commits = dict(INDEX.commits, **{head: ["2026-01-11", "0" * 40, "aa530cd"]})  # as if upstream's
    index = base.Index({"versions": INDEX.versions, "commits": commits, "lines": json.loads(base.INDEX.read_text())["lines"]})
    found = base.find_base(gpt, index)
    assert (found.version, found.guess) == ("aa530cd", False) and head[:7] in found.how and "git history" in found.how


def test_the_newest_known_version_carries_a_note_that_a_newer_base_gets_its_card(tmp_path):
    """A base at (or beyond) the newest version the kit knows is verified under the newest card, and says so."""
    assert "newest version the kit knows" in INDEX.newer_note(INDEX.newest) and INDEX.newer_note(INDEX.versions[0]) == ""


def test_the_card_is_chosen_in_order_option_project_base_default(tmp_path):
    """--architecture wins; the project's [tool.nanochat-verify] architecture applies to its own implementation only;
    another checkout gets its base; a lone file the default card."""
    settings = Settings(tmp_path, architecture="nanochat-a088b7a")
    own = OWN_MODEL
    assert base.choose_card(settings, own, "nanochat-92d63d4", own)[0].name == "nanochat-92d63d4"
    card, how = base.choose_card(settings, own, None, own)
    assert card.name == "nanochat-a088b7a" and "[tool.nanochat-verify]" in how
    assert str(tmp_path) not in how  # the sentence goes into COVERAGE.md: no path of the machine it ran on
    other = checkout(tmp_path / "other", OWN_MODEL.read_text())
    card, how = base.choose_card(settings, other, None, own)
    assert card.name.startswith("nanochat-") and "a guess from its code" in how
    lone = tmp_path / "lone_gpt.py"
    lone.write_text("")
    assert base.choose_card(Settings(tmp_path), lone, None, own)[0].name == "seed"


def test_the_pytest_header_names_the_implementation_the_card_and_how(pytester, tmp_path):
    """A run says which implementation it verifies and under which card, and how the card was chosen."""
    pytester.makepyfile(test_x="import pytest\n@pytest.mark.component('rope')\ndef test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:cov",
                                          f"--gpt-impl={SOURCE_ROOT}", "--architecture=nanochat-92d63d4")
    result.stdout.fnmatch_lines([f"nanochat-verify: implementation {OWN_MODEL}",
                                 "nanochat-verify: architecture nanochat-92d63d4 (card nanochat-92d63d4 named by "
                                 "--architecture)"])
