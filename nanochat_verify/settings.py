"""
A project's own settings for the kit: the `[tool.nanochat-verify]` table of its pyproject.toml, so that a
fork configures the suite where it keeps the rest of its configuration.

    [tool.nanochat-verify]
    architecture = "nanochat-92d63d4"   # a card name, or a .toml path relative to this pyproject.toml
    gpt-impl = "."                      # what to verify (default: the checkout's own nanochat/gpt.py)
    expect-failures = "findings.txt"    # the implementation's known findings
    import-timeout = 120                # seconds that importing the implementation may take (default 60)

    [tool.nanochat-verify.card]         # values that override the named card
    softcap = 30.0
"""

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TABLE = "nanochat-verify"
KEYS = ("architecture", "gpt-impl", "expect-failures", "import-timeout", "card")


class SettingsError(ValueError):
    """A [tool.nanochat-verify] table that cannot be understood."""


@dataclass(frozen=True)
class Settings:
    root: Path  # the folder of the pyproject.toml
    architecture: str | None = None  # as written: a card name, or a path resolved against root
    gpt_impl: str | None = None
    expect_failures: str | None = None
    import_timeout: float | None = None  # seconds; None: the default of nanochat_verify.contract
    card: dict = field(default_factory=dict)  # overrides of the named card's values


def read_settings(root):
    """The Settings of the project at `root` (all defaults where it has no pyproject.toml or no table)."""
    root = Path(root)
    pyproject = root / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text())
    except FileNotFoundError:
        return Settings(root)
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{pyproject}: cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{pyproject}: not valid TOML ({e})") from None
    table = data.get("tool", {}).get(TABLE, {})
    if not isinstance(table, dict):
        raise SettingsError(f"{pyproject}: [tool.{TABLE}] must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise SettingsError(f"{pyproject}: [tool.{TABLE}] has unknown key(s) {', '.join(unknown)}; "
                            f"known: {', '.join(KEYS)}")
    for key in ("architecture", "gpt-impl", "expect-failures"):
        if key in table and not (isinstance(table[key], str) and table[key].strip()):
            raise SettingsError(f"{pyproject}: [tool.{TABLE}] {key} = {table[key]!r}; expected a non-empty string")
    timeout = table.get("import-timeout")
    if timeout is not None and not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                                    and math.isfinite(timeout) and timeout > 0):
        raise SettingsError(f"{pyproject}: [tool.{TABLE}] import-timeout = {timeout!r}; expected a positive number "
                            f"of seconds")
    if not isinstance(table.get("card", {}), dict):
        raise SettingsError(f"{pyproject}: [tool.{TABLE}.card] must be a table of card values")

    def resolved(value, names_allowed):
        # paths are relative to the pyproject.toml that names them; names (a card, a dotted module) stay names
        if value is None:
            return None
        looks_like_path = value in (".", "..") or "/" in value or "\\" in value or value.endswith((".py", ".toml"))
        if names_allowed and not looks_like_path:
            return value
        return value if Path(value).is_absolute() else str((root / value).resolve())

    return Settings(root, architecture=resolved(table.get("architecture"), True),
                    gpt_impl=resolved(table.get("gpt-impl"), True),
                    expect_failures=resolved(table.get("expect-failures"), False),
                    import_timeout=None if timeout is None else float(timeout), card=dict(table.get("card", {})))


def default_implementation(settings):
    """What a run in this project verifies when no --gpt-impl names it: the project's `gpt-impl` setting, else
    the project's own nanochat checkout; None when it has neither."""
    from nanochat_verify.paths import checkout_model
    if settings.gpt_impl:
        return settings.gpt_impl
    return str(settings.root) if checkout_model(settings.root) else None


def no_implementation(root):
    return (f"nothing to verify: {root} holds no nanochat/gpt.py and its pyproject.toml names no gpt-impl; run from "
            f"a nanochat checkout, or name the implementation with --gpt-impl=PATH")


def default_implementation_file(settings):
    """The source file of the project's own implementation (default_implementation), or None."""
    spec = default_implementation(settings)
    if spec is None:
        return None
    from nanochat_verify.contract import ContractError, is_path, resolve_path
    try:
        if is_path(spec):
            return resolve_path(spec)
        import importlib.util
        found = importlib.util.find_spec(spec)
        return Path(found.origin).resolve() if found and found.origin else None
    except (ContractError, ImportError, ValueError):
        return None
