"""
The architecture card: one declaration of the architecture the suite verifies.

A card is a TOML file (nanochat_verify/cards/*.toml: `seed`, the project's default and the 561M target of
the seed document, and one card for each version of the real nanochat, `nanochat-<commit>`). It holds the
values the architecture is made of (softcap, RoPE base, rotary table length and dtype, MLP ratio, QK gain,
init rules...) and, for each modern component of the table (nanochat_verify/components.py), a table that
says whether the architecture has it (`presence`), the GPTConfig keywords that switch it on (`switch`) and,
for one that is always on, those that switch it off (`off`, used by the tests of the other components), and its
values; a component whose table no card of the chain has is absent. The tests, the naive oracle, the tracer and COVERAGE.md read the card; no architecture
literal lives anywhere else.

Which card: `--architecture NAME_OR_PATH` (pytest and every tool of the kit), else the
`[tool.nanochat-verify]` table of the project's pyproject.toml (nanochat_verify/settings.py):

    [tool.nanochat-verify]
    architecture = "seed"        # a card name or a path to a .toml file

    [tool.nanochat-verify.card]  # optional: values that override the named card
    softcap = 30.0

A card may `extends = "other-card"` (a name, or a path relative to the card that names it); tables are
merged key by key. A card that extends another and does not set its own `name` is named after its file.
`[replaced]` declares components a fork replaced on purpose (`attention = "NAG attention, see nag_gpt.py"`):
their tests do not run, and the report shows them as declared. `[extra.<name>]` declares parameters of a part
the component table does not model (a version's experiment): its `note`, its `parameters` (names in the model),
the `neutral` values at which it does nothing, which the tests of the other components set, and which of them
are `matmul` weights (the FLOPs estimates count those); the parameter counts leave them out, and the report
lists them.

Every value is checked against the schema below before any test runs: its type and range, nested tables
included; an unknown key is refused with the closest known key suggested. One error line names the file,
the key, the value and what was expected.
"""

import difflib
import fnmatch
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from nanochat_verify.components import ALL, BY_KEY, FEATURES, PARAMETER_GROUPS
from nanochat_verify.paths import CARDS_DIR

DEFAULT_CARD = "seed"
ABSENT, OPTIONAL, ALWAYS = "absent", "optional", "always"
PRESENCE = (ABSENT, OPTIONAL, ALWAYS)
DTYPES = ("float32", "bfloat16", "float16", "float64", "compute")
INIT_KEYS = tuple(PARAMETER_GROUPS)
DISTRIBUTIONS = ("normal", "uniform", "zeros", "constant", "linear")


class CardError(ValueError):
    """A card that cannot be found, read or understood."""


# ---- the schema ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Value:
    """What one key of a card accepts."""
    kind: str  # number | integer | boolean | text | choice | table | any (the check decides)
    expected: str  # in the words of an error message
    check: object = None  # value -> bool, beyond the kind
    choices: tuple = ()

    def problem(self, value):
        """Why `value` is not acceptable, or None."""
        ok = {
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "text": isinstance(value, str) and value.strip() != "",
            "choice": value in self.choices,
            "table": isinstance(value, dict),
            "any": True,
        }[self.kind]
        if ok and self.check is not None:
            try:
                ok = bool(self.check(value))
            except (TypeError, ValueError, OverflowError):
                ok = False
        return None if ok else self.expected


def _finite_positive(limit=1e12):
    return lambda v: math.isfinite(v) and 0 < v <= limit


NUMBER = Value("number", "a finite number > 0", _finite_positive())
TEXT = Value("text", "a non-empty string")
BOOLEAN = Value("boolean", "true or false (a TOML boolean, not a string)")


def integer(minimum=1, maximum=10**9):
    return Value("integer", f"a whole number from {minimum} to {maximum:,}", lambda v: minimum <= v <= maximum)


def choice(*values):
    return Value("choice", "one of " + ", ".join(repr(v) for v in values), choices=values)


CORE = {
    "name": TEXT, "title": TEXT, "source": TEXT,
    "softcap": Value("number", "a finite number > 0 (logits = softcap * tanh(raw / softcap))", _finite_positive(1e6)),
    "logits_dtype": choice(*DTYPES),
    "rope_base": Value("number", "a finite number > 1 and at most 1e9 (RoPE's theta base)",
                       lambda v: math.isfinite(v) and 1 < v <= 1e9),
    "rotary_len_factor": integer(1, 1000),
    "rotary_dtype": choice(*DTYPES),
    "qk_gain": Value("number", "a finite number > 0 (q and k multiplied by it after QK norm)", _finite_positive(1e3)),
    "mlp_ratio": integer(1, 64),
    "activation": choice("relu2"),
    "min_train_len": integer(1, 2),
    "kv_cache_grows": BOOLEAN,
}
TARGET = {"depth": integer(1, 1000), "millions": integer(1, 10**7)}
INIT_RULE = {
    "dist": choice(*DISTRIBUTIONS),
    "std": Value("any", "a finite number > 0, 'fan' or 'c/sqrt(n_embd)' with c > 0",
                 lambda v: (v == "fan" or _per_sqrt_n_embd(v) > 0) if isinstance(v, str) else
                 (isinstance(v, (int, float)) and not isinstance(v, bool) and _finite_positive()(v))),
    "low": Value("number", "a finite number", lambda v: math.isfinite(v)),
    "high": Value("number", "a finite number", lambda v: math.isfinite(v)),
    "value": Value("number", "a finite number", lambda v: math.isfinite(v)),
    "start": Value("number", "a finite number", lambda v: math.isfinite(v)),
    "end": Value("number", "a finite number", lambda v: math.isfinite(v)),
}
# what each distribution needs (std may also be given to a uniform instead of low/high)
INIT_NEEDS = {"normal": {"std"}, "uniform": set(), "zeros": set(), "constant": {"value"}, "linear": {"start", "end"}}


def _setting_value(setting):
    """A components.Setting as a schema Value."""
    if setting.kind == "integer":
        return integer(setting.minimum)
    if setting.kind == "number":
        return NUMBER
    if setting.kind == "boolean":
        return BOOLEAN
    if setting.kind == "choice":
        return choice(*setting.choices)
    if setting.kind == "pattern":
        return Value("text", f"a string matching {setting.choices[0]}",
                     lambda v: re.fullmatch(setting.choices[0], v) is not None)
    raise AssertionError(f"setting kind {setting.kind!r}")  # pragma: no cover - a declaration bug


FEATURE_TABLES = {c.feature: {"presence": choice(*PRESENCE), "switch": Value("table", "a table of GPTConfig keywords"),
                              "off": Value("table", "a table of GPTConfig keywords that switch it off"),
                              **{s.name: _setting_value(s) for s in c.settings}}
                  for c in ALL if c.feature}
OPTIONAL_FEATURE_KEYS = ("off",)
TOP_TABLES = ("target", "init", "replaced", "extra", *FEATURES)
EXTRA = {"note": TEXT,
         "parameters": Value("any", "a list of parameter names of the model",
                             lambda v: isinstance(v, list) and v and all(isinstance(n, str) and n for n in v)),
         "neutral": Value("table", "a table of parameter name = the value at which the part does nothing"),
         "matmul": Value("any", "a list of its parameters that multiply the token stream (the FLOPs estimates count "
                                "them as matmul weights; the others are lookups or scalars)",
                         lambda v: isinstance(v, list) and all(isinstance(n, str) and n for n in v))}


def presence(data, feature):
    """A feature's presence in a card's merged data: absent where no card of its chain has the feature's table."""
    return data[feature]["presence"] if feature in data else ABSENT


class _Checker:
    """Walks one card's data against the schema, raising a CardError for the first problem."""

    def __init__(self, where):
        self.where = where

    def fail(self, key, value, expected):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise CardError(f"{self.where}: {key} = {shown}: expected {expected}")

    def unknown(self, key, known):
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
        raise CardError(f"{self.where}: unknown key {key!r}{hint}")

    def values(self, data, schema, prefix="", required=()):
        for key, value in data.items():
            if key not in schema:
                self.unknown(prefix + key, schema)
            problem = schema[key].problem(value)
            if problem:
                self.fail(prefix + key, value, problem)
        missing = [k for k in required if k not in data]
        if missing:
            raise CardError(f"{self.where}: missing {', '.join(prefix + k for k in missing)}")

    def card(self, data):
        for key in data:
            if key not in CORE and key not in TOP_TABLES:
                self.unknown(key, [*CORE, *TOP_TABLES])
            if key in TOP_TABLES and not isinstance(data[key], dict):
                self.fail(key, data[key], "a table")
        self.values({k: v for k, v in data.items() if k in CORE}, CORE, required=tuple(CORE))
        self.values(data.get("target", {}), TARGET, "target.", required=tuple(TARGET))
        for feature in FEATURES:
            if feature not in data:  # a card that never mentions a component does not have it
                continue
            table = data[feature]
            self.values(table, FEATURE_TABLES[feature], f"{feature}.",
                        required=tuple(k for k in FEATURE_TABLES[feature] if k not in OPTIONAL_FEATURE_KEYS))
        self.init(data.get("init", {}), {p for c in ALL if not c.feature or presence(data, c.feature) != ABSENT
                                         for p in (g.name for g in c.parameters)})
        for key, note in data.get("replaced", {}).items():
            if key not in BY_KEY:
                self.unknown(f"replaced.{key}", BY_KEY)
            if not (isinstance(note, str) and note.strip()):
                self.fail(f"replaced.{key}", note, "a note saying what replaced it and why")
        for name, extra in data.get("extra", {}).items():
            if not isinstance(extra, dict):
                self.fail(f"extra.{name}", extra, "a table with note, parameters and neutral")
            self.values(extra, EXTRA, f"extra.{name}.", required=("note", "parameters"))
            for param in extra.get("matmul", []):
                if param not in extra["parameters"]:
                    self.fail(f"extra.{name}.matmul", param, f"one of its parameters {extra['parameters']}")
            for param, value in extra.get("neutral", {}).items():
                if param not in extra["parameters"]:
                    self.fail(f"extra.{name}.neutral.{param}", value, f"one of its parameters {extra['parameters']}")
                if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                    self.fail(f"extra.{name}.neutral.{param}", value, "a finite number")

    def init(self, table, needed):
        for key, rule in table.items():
            if key not in PARAMETER_GROUPS:
                self.unknown(f"init.{key}", PARAMETER_GROUPS)
            if not isinstance(rule, dict):
                self.fail(f"init.{key}", rule, "a table such as { dist = \"normal\", std = \"fan\" }")
            self.values(rule, INIT_RULE, f"init.{key}.", required=("dist",))
            dist = rule["dist"]
            lacking = sorted(INIT_NEEDS[dist] - set(rule))
            if dist == "uniform" and not ("std" in rule or {"low", "high"} <= set(rule)):
                lacking = ["std (or low and high)"]
            if lacking:
                raise CardError(f"{self.where}: init.{key}: a {dist} rule needs {', '.join(lacking)}")
            if {"low", "high"} <= set(rule) and not rule["low"] < rule["high"]:
                self.fail(f"init.{key}.high", rule["high"], f"a number above low = {rule['low']!r}")
        missing = sorted(needed - set(table))
        if missing:
            raise CardError(f"{self.where}: [init] has no rule for {', '.join(missing)}")


# ---- initialisation rules -------------------------------------------------------------------------

@dataclass(frozen=True)
class InitRule:
    """How init_weights draws one group of parameters."""
    dist: str  # normal | uniform | zeros | constant | linear
    std: object = None  # normal / symmetric uniform: a number, "fan" or "c/sqrt(n_embd)"
    low: float | None = None  # uniform with explicit bounds
    high: float | None = None
    value: float | None = None  # constant
    start: float | None = None  # linear: value at the first layer ...
    end: float | None = None  # ... and at the last

    def std_for(self, fan_out, fan_in, n_embd):
        """The standard deviation this rule gives a weight of shape (fan_out, fan_in)."""
        if self.dist == "zeros":
            return 0.0
        if self.dist == "uniform" and self.std is None:
            return (self.high - self.low) / math.sqrt(12)
        if self.std == "fan":
            # 1/sqrt(fan_in), shrunk for narrowing layers (arXiv 2310.17813)
            return 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))
        if isinstance(self.std, str):
            return _per_sqrt_n_embd(self.std) / math.sqrt(n_embd)
        return float(self.std)

    def bounds(self, fan_out, fan_in, n_embd):
        """(low, high) of a uniform rule."""
        if self.low is not None:
            return self.low, self.high
        half = math.sqrt(3) * self.std_for(fan_out, fan_in, n_embd)  # U(-a, a) has std a / sqrt(3)
        return -half, half

    def mean(self):
        if self.dist == "uniform" and self.low is not None:
            return (self.low + self.high) / 2
        return self.value if self.dist == "constant" else 0.0

    def schedule(self, n_layer):
        """Per-layer values of a linear rule: start at layer 0, end at layer n_layer - 1."""
        return [self.start + (self.end - self.start) * i / max(n_layer - 1, 1) for i in range(n_layer)]

    def describe(self):
        if self.dist == "zeros":
            return "zeros"
        if self.dist == "constant":
            return f"{self.value:g}"
        if self.dist == "linear":
            return f"{self.start:g} → {self.end:g} over the layers"
        if self.low is not None:
            return f"U({self.low:g}, {self.high:g})"
        std = {"fan": "1/√fan_in·min(1, √(fan_out/fan_in))"}.get(self.std, self.std)
        std = std.replace("sqrt(n_embd)", "√n_embd") if isinstance(std, str) else f"{std:g}"
        return f"{'N' if self.dist == 'normal' else 'U'}(0, std {std})"


def _per_sqrt_n_embd(text):
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*/\s*sqrt\(n_embd\)\s*", text)
    if not m:
        raise ValueError(f"init std {text!r}: expected a number, 'fan' or 'c/sqrt(n_embd)'")
    return float(m.group(1))


# ---- the card -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Architecture:
    name: str
    title: str
    source: str
    path: Path
    softcap: float
    logits_dtype: str
    rope_base: float
    rotary_len_factor: int
    rotary_dtype: str
    qk_gain: float
    mlp_ratio: int
    activation: str
    min_train_len: int
    kv_cache_grows: bool
    target_depth: int
    target_millions: int
    features: dict  # feature -> presence (absent | optional | always)
    feature_config: dict  # feature -> the GPTConfig keywords that switch it on
    feature_off: dict = field(default_factory=dict)  # feature -> the GPTConfig keywords that switch an always-on one off
    feature_settings: dict = field(repr=False, default_factory=dict)  # feature -> its values
    init: dict = field(repr=False, default_factory=dict)
    replaced_components: dict = field(default_factory=dict)  # component key -> why the fork replaced it on purpose
    extras: dict = field(default_factory=dict)  # name -> {"note", "parameters", "neutral"}: parts the table lacks
    overrides: dict = field(default_factory=dict)  # the [tool.nanochat-verify.card] values merged over the file's

    def __getattr__(self, name):
        # card.smear["channels"]: a feature's values by the feature's name
        settings = self.__dict__.get("feature_settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(name)

    # ---- features --------------------------------------------------------------------------------

    def settings(self, feature):
        return self.feature_settings[feature]

    def has(self, feature):
        """Whether the implementation under this card has `feature` (always, or as a config option)."""
        return self.features[feature] != ABSENT

    def always(self, feature):
        return self.features[feature] == ALWAYS

    def replaced(self, component):
        """The card's note when it declares `component` (a key of the component table) replaced on purpose."""
        return self.replaced_components.get(component)

    def config_for(self, *features):
        """GPTConfig keywords that switch on these features (nothing for features that are always on)."""
        kwargs = {}
        for f in features:
            if not self.has(f):
                raise CardError(f"card {self.name!r} has no {f}")
            if self.features[f] == OPTIONAL:
                kwargs.update(self.feature_config.get(f, {}))
        return kwargs

    def config_without(self, *features):
        """GPTConfig keywords that switch off the always-on features other than `features`, where the card says how
        (`off`): the tests of the other components then see the architecture without them, as the neutral values of
        their parameters do for the components that have no switch."""
        kwargs = {}
        for f, off in self.feature_off.items():
            if f not in features and self.has(f):
                kwargs.update(off)
        return kwargs

    def active(self, feature, config):
        """Whether `feature` is on in a model built from `config` under this card."""
        if self.features[feature] == ALWAYS:
            off = self.feature_off.get(feature)
            return not (off and all(getattr(config, k, None) == v for k, v in off.items()))
        if self.features[feature] != OPTIONAL:
            return False
        switch = self.feature_config.get(feature, {})
        return bool(switch) and all(getattr(config, k, None) == v for k, v in switch.items())

    # ---- derived values --------------------------------------------------------------------------

    def padded_vocab_size(self, vocab_size, active=True):
        m = self.padded_vocab["multiple"] if active else 1
        return -(-vocab_size // m) * m

    def window_sizes(self, sequence_len, n_layer, active=True):
        """Per-layer left window W (a query sees itself and W keys before it); the last layer is long."""
        long = sequence_len
        if not active:
            return [long] * n_layer
        sw = self.sliding_window
        if sw["short_rounding"] == "floor":
            short = long // sw["short_divisor"]
        else:
            short = -(-long // sw["short_divisor"] // sw["tile"]) * sw["tile"]
        pattern = sw["pattern"]
        sizes = [short if pattern[i % len(pattern)] == "S" else long for i in range(n_layer)]
        sizes[-1] = long
        return sizes

    def ve_layers(self, n_layer):
        """Layers with a value embedding: alternating, the last layer always included."""
        return [i for i in range(n_layer) if i % 2 == (n_layer - 1) % 2]

    def backout_layer(self, n_layer):
        return n_layer // 2

    def table_dtype(self, impl):
        """The dtype the rotary tables are kept in for this implementation."""
        import torch
        if self.rotary_dtype == "compute":
            return getattr(impl, "COMPUTE_DTYPE", torch.float32)
        return getattr(torch, self.rotary_dtype)

    def init_rule(self, key):
        return self.init[key]

    def extra_parameters(self):
        """The parameters of the card's extras: `name in card.extra_parameters()` for a model's parameter name
        (the card lists names, or patterns such as value_embeds.*.weight)."""
        return _Patterns(p for extra in self.extras.values() for p in extra["parameters"])

    def extra_matmul_parameters(self):
        """The extras' parameters that multiply the token stream (`matmul`): FLOPs estimates count them."""
        return _Patterns(p for extra in self.extras.values() for p in extra.get("matmul", []))

    def describe(self):
        """The card's values as (name, value) rows, for reports and the tracer."""
        rows = [("softcap", f"{self.softcap:g}·tanh(x/{self.softcap:g}), logits {self.logits_dtype}"),
                ("RoPE", f"base {self.rope_base:g}, tables for {self.rotary_len_factor}·sequence_len positions "
                         f"in {self.rotary_dtype}"),
                ("QK gain", f"{self.qk_gain:g}"), ("MLP", f"{self.mlp_ratio}·n_embd, {self.activation}"),
                ("target", f"depth {self.target_depth}: {self.target_millions}M parameters")]
        rows += [(f, self.features[f]) for f in FEATURES]
        rows += [(f"{key} replaced", note) for key, note in sorted(self.replaced_components.items())]
        rows += [(f"extra: {name}", extra["note"]) for name, extra in sorted(self.extras.items())]
        return rows


class _Patterns(frozenset):
    """Parameter names and fnmatch patterns: `in` matches a name against any of them."""

    def __contains__(self, name):
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self)


# ---- reading cards -------------------------------------------------------------------------------

def _merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read(spec, relative_to=None, seen=(), named_by=None):
    """(the merged data, the path) of the card `spec`; `relative_to` is the folder of the card whose
    `extends` names it (a relative path resolves there, not where the user stands)."""
    path = _card_path(spec, relative_to, named_by)
    if path in seen:
        raise CardError(f"card {path}: 'extends' goes round in a circle ({' -> '.join(map(str, (*seen, path)))})")
    try:
        data = tomllib.loads(path.read_text())
    except UnicodeDecodeError:
        raise CardError(f"card {path}: not a text file (a card is TOML)") from None
    except OSError as e:
        raise CardError(f"card {path}: cannot read it: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise CardError(f"card {path}: not valid TOML: {e}") from None
    base = data.pop("extends", None)
    if base is not None:
        if not (isinstance(base, str) and base.strip()):
            raise CardError(f"card {path}: extends = {base!r}: expected a card name or a .toml path")
        inherited, _ = _read(base, path.parent, (*seen, path), named_by=f"{path}: extends")
        if "name" not in data:  # a card of one's own is named after its file, never after the card it extends
            data.setdefault("name", path.stem)
            data.setdefault("title", f"{path.stem} (extends {inherited['name']})")
        data = _merge(inherited, data)
    return data, path


def _card_path(spec, relative_to=None, named_by=None):
    who = named_by or "--architecture"
    if not isinstance(spec, str) or not spec.strip():
        raise CardError(f"{who} {spec!r}: expected a card name ({', '.join(card_names())}) or a .toml path")
    if spec.endswith(".toml") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser()
        path = (path if path.is_absolute() or relative_to is None else Path(relative_to) / path).resolve()
        if not path.is_file():
            raise CardError(f"{who} {spec!r}: no such card file ({path})")
        return path
    path = CARDS_DIR / f"{spec}.toml"
    if not path.is_file():
        close = difflib.get_close_matches(spec, card_names(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(card_names())}"
        raise CardError(f"{who} {spec!r}: no card of that name; {hint}")
    return path


def card_names():
    return sorted(p.stem for p in CARDS_DIR.glob("*.toml"))


def load_card(spec=None, overrides=None):
    """The Architecture named by `spec` (a card name or a .toml path; None: the default card), with `overrides`
    (a dict of card values, e.g. [tool.nanochat-verify.card]) merged over it."""
    data, path = _read(spec or DEFAULT_CARD)
    where = f"card {path}"
    if overrides:
        if not isinstance(overrides, dict):
            raise CardError(f"[tool.nanochat-verify.card] must be a table of card values, got {overrides!r}")
        _Checker(f"{where} with [tool.nanochat-verify.card]").card(_merge(data, overrides))
        data, where = _merge(data, overrides), f"{where} with [tool.nanochat-verify.card]"
    _Checker(where).card(data)
    return _build(data, path, overrides or {})


def project_card(settings, spec=None):
    """The card a run in the project of `settings` verifies against: `spec` (an --architecture option), else the
    project's [tool.nanochat-verify] architecture, with the project's card overrides either way."""
    return load_card(spec or settings.architecture, settings.card)


def _build(data, path, overrides):
    target = data["target"]
    return Architecture(
        name=data["name"], title=data["title"], source=data["source"], path=path,
        softcap=float(data["softcap"]), logits_dtype=data["logits_dtype"], rope_base=float(data["rope_base"]),
        rotary_len_factor=data["rotary_len_factor"], rotary_dtype=data["rotary_dtype"],
        qk_gain=float(data["qk_gain"]), mlp_ratio=data["mlp_ratio"], activation=data["activation"],
        min_train_len=data["min_train_len"], kv_cache_grows=data["kv_cache_grows"],
        target_depth=target["depth"], target_millions=target["millions"],
        features={f: presence(data, f) for f in FEATURES},
        feature_config={f: dict(data.get(f, {}).get("switch", {})) for f in FEATURES},
        feature_off={f: dict(data[f]["off"]) for f in FEATURES if data.get(f, {}).get("off")},
        feature_settings={f: {k: v for k, v in data.get(f, {}).items() if k not in ("presence", "switch", "off")}
                          for f in FEATURES},
        init={key: InitRule(**rule) for key, rule in data.get("init", {}).items()},
        replaced_components=dict(data.get("replaced", {})),
        extras={name: {"note": e["note"], "parameters": list(e["parameters"]), "neutral": dict(e.get("neutral", {})),
                       "matmul": list(e.get("matmul", []))}
                for name, e in data.get("extra", {}).items()},
        overrides=dict(overrides))
