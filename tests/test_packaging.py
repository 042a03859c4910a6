"""The kit as a fork's maintainer installs it: a distribution of its own that never touches another
distribution's `nanochat`, and a suite that runs from the fork's root, configured by the fork's pyproject.

These build a wheel and a virtual environment, so they run with `--run-packaging` only (CI does).
The environment borrows torch, pytest and hypothesis from the running one (a path file), so nothing is
downloaded; the kit itself is installed from its wheel, never in editable mode.
"""

import hashlib
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from nanochat_verify.paths import SOURCE_ROOT

pytestmark = [pytest.mark.tooling, pytest.mark.packaging, pytest.mark.component("tooling.packaging")]
UPSTREAM_92D = Path(SOURCE_ROOT or ".").parent / "shared" / "upstream" / "nanochat-92d63d4"
FORK_PYPROJECT = """[project]
name = "nanochat"
version = "0.0.1"

[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[tool.setuptools]
packages = ["nanochat"]
"""


def run(*args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("COVERAGE_FILE", "PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def wheel_of(project, out):
    """The wheel of the project at `project`, built by the running environment."""
    out.mkdir(parents=True, exist_ok=True)
    run(sys.executable, "-m", "pip", "wheel", project, "--no-deps", "--no-build-isolation", "-q", "-w", out, cwd=out)
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def kit_wheel(tmp_path_factory):
    """The kit's wheel, built from this checkout."""
    return wheel_of(SOURCE_ROOT, tmp_path_factory.mktemp("kit-wheel"))


def new_environment(folder):
    """A virtual environment that sees the running one's packages (torch, pytest, hypothesis...) but not its
    editable kit: a path line adds the site folder without processing the .pth files inside it."""
    run(sys.executable, "-m", "venv", folder, cwd=folder.parent)
    python = folder / "bin" / "python"
    inside = run(python, "-c", "import site; print(site.getsitepackages()[0])", cwd=folder).stdout.strip()
    Path(inside, "borrowed.pth").write_text(site.getsitepackages()[0] + "\n")
    return python


def files_of(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*.py"))}


def source_files_of_the_kit():
    """The kit's files as they travel in its wheel: nanochat_verify/ as it is, tests/ as nanochat_verify/suite/
    (what git tracks, where the checkout is a git clone; else every file but caches)."""
    folders = {"nanochat_verify": "nanochat_verify", "tests": "nanochat_verify/suite"}
    proc = subprocess.run(["git", "ls-files", *folders], cwd=SOURCE_ROOT, capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        paths = proc.stdout.split()
    else:
        paths = [p.relative_to(SOURCE_ROOT).as_posix() for folder in folders for p in (SOURCE_ROOT / folder).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
    return {folders[path.split("/", 1)[0]] + "/" + path.split("/", 1)[1] for path in paths}


def test_the_wheel_carries_every_file_of_the_kit_and_its_suite(kit_wheel):
    """Every file of nanochat_verify/ and tests/ is in the wheel (a data file left out of the package data, like
    the upstream index once, breaks the suite only where the kit is installed from its wheel)."""
    import zipfile
    with zipfile.ZipFile(kit_wheel) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("nanochat_verify/")}
    missing = sorted(source_files_of_the_kit() - shipped)
    assert not missing, f"files of the kit not in its wheel: {missing}"


def test_installing_and_removing_the_kit_never_touches_a_forks_installed_nanochat(kit_wheel, tmp_path):
    """A fork installed (not editable) as the distribution `nanochat`: installing the kit leaves every file of
    the fork's package as it was, the kit's own files hold no nanochat/, and uninstalling the kit leaves the
    fork importable."""
    python = new_environment(tmp_path / "env")
    fork = tmp_path / "fork"
    (fork / "nanochat").mkdir(parents=True)
    (fork / "nanochat" / "__init__.py").write_text("")
    (fork / "nanochat" / "gpt.py").write_text("WHOSE = 'the fork'\n")
    (fork / "pyproject.toml").write_text(FORK_PYPROJECT)
    run(python, "-m", "pip", "install", "-q", "--no-deps", wheel_of(fork, tmp_path / "fork-wheel"), cwd=tmp_path)
    located = run(python, "-c", "import nanochat.gpt, os; print(os.path.dirname(nanochat.gpt.__file__))",
                  cwd=tmp_path).stdout.strip()
    before = files_of(located)
    run(python, "-m", "pip", "install", "-q", "--no-deps", kit_wheel, cwd=tmp_path)
    assert files_of(located) == before
    listed = run(python, "-m", "pip", "show", "-f", "nanochat-verify", cwd=tmp_path).stdout
    assert "nanochat_verify/plugin/__init__.py" in listed and "nanochat/" not in listed.replace("nanochat_verify", "")
    run(python, "-m", "pip", "uninstall", "-y", "-q", "nanochat-verify", cwd=tmp_path)
    assert files_of(located) == before
    assert run(python, "-c", "import nanochat.gpt; print(nanochat.gpt.WHOSE)", cwd=tmp_path).stdout.strip() == "the fork"


@pytest.mark.skipif(not UPSTREAM_92D.is_dir(), reason="needs ../shared/upstream beside the checkout (the real "
                                                       "nanochat, test data that CI has)")
def test_a_fork_adopts_the_kit_from_its_own_root(kit_wheel, tmp_path):
    """A copy of nanochat 92d63d4 with a pyproject of its own naming its card, the kit installed from its wheel:
    from the fork's root `pytest --pyargs nanochat_verify.suite` collects the kit's suite through the plugin's entry
    point and verifies the fork's own ./nanochat under that card (here the LM head's tests, to stay quick), and
    the report command writes the fork's COVERAGE.md into the fork, with paths relative to it."""
    python = new_environment(tmp_path / "env")
    run(python, "-m", "pip", "install", "-q", "--no-deps", kit_wheel, cwd=tmp_path)
    fork = tmp_path / "fork"
    shutil.copytree(UPSTREAM_92D / "nanochat", fork / "nanochat")
    (fork / "pyproject.toml").write_text(FORK_PYPROJECT + '\n[tool.nanochat-verify]\narchitecture = "nanochat-92d63d4"\n')
    out = run(python, "-m", "pytest", "--pyargs", "nanochat_verify.suite.test_lm_head", "-v", "-p", "no:randomly",
              "-p", "no:cacheprovider", cwd=fork).stdout
    assert " passed" in out and "failed" not in out and "softcap=15]" in out  # 92d63d4's softcap is 15 at the head
    report = run(python, "-m", "nanochat_verify.report", "--skip-mutation", cwd=fork, timeout=600)
    text = (fork / "COVERAGE.md").read_text()
    assert "`nanochat/gpt.py` verified against the card `nanochat-92d63d4`" in text, report.stderr[-2000:]
    assert str(tmp_path) not in text
