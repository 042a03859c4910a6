"""
The architecture card: one declaration of the architecture the suite verifies.

A card is a TOML file (nanochat_verify/cards/*.toml: `seed`, the project's default and the 561M target of
the seed document; `nanochat-a088b7a`; `nanochat-92d63d4`, nanochat today). It holds
the values the architecture is made of (softcap, RoPE base, rotary table length and dtype, MLP
ratio, QK gain, init rules...) and which modern components it has. The tests, the naive oracle,
the tracer and COVERAGE.md read the card; no architecture literal lives anywhere else.

Which card: `--architecture NAME_OR_PATH` (pytest and every tool of the kit), else the
`[tool.nanochat-verify]` table of the project's pyproject.toml (nanochat_verify/settings.py):

    [tool.nanochat-verify]
    architecture = "seed"        # a card name or a path to a .toml file

    [tool.nanochat-verify.card]  # optional: values that override the named card
    softcap = 30.0

A card may `extends = "other-card"`; tables are merged key by key.
"""

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from nanochat_verify.paths import CARDS_DIR

DEFAULT_CARD = "seed"

ABSENT, OPTIONAL, ALWAYS = "absent", "optional", "always"
FEATURES = ("sliding_window", "value_embeddings", "lambdas", "smear", "backout", "padded_vocab", "flash_kv_cache")
INIT_KEYS = ("wte", "lm_head", "c_q", "c_k", "c_v", "attn.c_proj", "c_fc", "mlp.c_proj", "value_embeds", "ve_gate",
             "smear_gate", "resid_lambdas", "x0_lambdas", "smear_lambda", "backout_lambda")
DTYPES = ("float32", "bfloat16", "float16", "float64", "compute")


class CardError(ValueError):
    """A card that cannot be found, read or understood."""


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
        raise CardError(f"init std {text!r}: expected a number, 'fan' or 'c/sqrt(n_embd)'")
    return float(m.group(1))


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
    features: dict
    feature_config: dict
    sliding_window: dict
    value_embeddings: dict
    smear: dict
    backout: dict
    padded_vocab: dict
    init: dict = field(repr=False)
    replaced_components: dict = field(default_factory=dict)  # component key -> why the fork replaced it on purpose

    # ---- features --------------------------------------------------------------------------------

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

    def active(self, feature, config):
        """Whether `feature` is on in a model built from `config` under this card."""
        if self.features[feature] != OPTIONAL:
            return self.always(feature)
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

    def describe(self):
        """The card's values as (name, value) rows, for reports and the tracer."""
        rows = [("softcap", f"{self.softcap:g}·tanh(x/{self.softcap:g}), logits {self.logits_dtype}"),
                ("RoPE", f"base {self.rope_base:g}, tables for {self.rotary_len_factor}·sequence_len positions "
                         f"in {self.rotary_dtype}"),
                ("QK gain", f"{self.qk_gain:g}"), ("MLP", f"{self.mlp_ratio}·n_embd, {self.activation}"),
                ("target", f"depth {self.target_depth}: {self.target_millions}M parameters")]
        rows += [(f, self.features[f]) for f in FEATURES]
        return rows


# ---- reading cards -------------------------------------------------------------------------------

_REQUIRED = ("name", "title", "source", "softcap", "logits_dtype", "rope_base", "rotary_len_factor", "rotary_dtype",
             "qk_gain", "mlp_ratio", "activation", "min_train_len", "kv_cache_grows", "target", "features",
             "feature_config", "sliding_window", "value_embeddings", "smear", "backout", "padded_vocab", "init")


_OPTIONAL = ("replaced",)


def _merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read(spec, seen=()):
    path = _card_path(spec)
    if path in seen:
        raise CardError(f"card {spec!r}: 'extends' goes round in a circle ({' -> '.join(map(str, seen))})")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise CardError(f"card {spec!r}: cannot read {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise CardError(f"card {spec!r}: {path} is not valid TOML: {e}") from None
    base = data.pop("extends", None)
    if base is not None:
        data = _merge(_read(base, (*seen, path))[0], data)
    return data, path


def _card_path(spec):
    if not isinstance(spec, str) or not spec.strip():
        raise CardError(f"--architecture {spec!r}: expected a card name ({', '.join(card_names())}) or a .toml path")
    if spec.endswith(".toml") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise CardError(f"--architecture {spec!r}: no such card file")
        return path
    path = CARDS_DIR / f"{spec}.toml"
    if not path.is_file():
        raise CardError(f"--architecture {spec!r}: no card of that name; known: {', '.join(card_names())}")
    return path


def card_names():
    return sorted(p.stem for p in CARDS_DIR.glob("*.toml"))


def load_card(spec=None, overrides=None):
    """The Architecture named by `spec` (a card name or a .toml path; None: the default card), with `overrides`
    (a dict of card values, e.g. [tool.nanochat-verify.card]) merged over it."""
    data, path = _read(spec or DEFAULT_CARD)
    if overrides:
        data = _merge(data, overrides)
    return _build(data, path, spec or DEFAULT_CARD)


def project_card(settings, spec=None):
    """The card a run in the project of `settings` verifies against: `spec` (an --architecture option), else the
    project's [tool.nanochat-verify] architecture, with the project's card overrides either way."""
    return load_card(spec or settings.architecture, settings.card)


def _build(data, path, spec):
    where = f"card {spec!r} ({path})"
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CardError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise CardError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_REQUIRED)}")
    features = data["features"]
    if sorted(features) != sorted(FEATURES) or any(v not in (ABSENT, OPTIONAL, ALWAYS) for v in features.values()):
        raise CardError(f"{where}: [features] must give each of {', '.join(FEATURES)} as absent, optional or always")
    for key in ("rotary_dtype", "logits_dtype"):
        if data[key] not in DTYPES:
            raise CardError(f"{where}: {key} = {data[key]!r}; expected one of {', '.join(DTYPES)}")
    if not (isinstance(data["softcap"], (int, float)) and data["softcap"] > 0):
        raise CardError(f"{where}: softcap = {data['softcap']!r}; expected a positive number")
    if set(data["sliding_window"].get("pattern", "")) - set("SL") or not data["sliding_window"].get("pattern"):
        raise CardError(f"{where}: sliding_window.pattern must be made of S and L")
    unknown_init = sorted(set(data["init"]) - set(INIT_KEYS))
    if unknown_init or sorted(data["init"]) != sorted(INIT_KEYS):
        raise CardError(f"{where}: [init] must give exactly {', '.join(INIT_KEYS)}"
                        + (f"; unknown: {', '.join(unknown_init)}" if unknown_init else ""))
    init = {}
    for key, rule in data["init"].items():
        try:
            init[key] = InitRule(**rule)
        except TypeError as e:
            raise CardError(f"{where}: init.{key}: {e}") from None
        if isinstance(init[key].std, str) and init[key].std != "fan":
            _per_sqrt_n_embd(init[key].std)
    target = data["target"]
    return Architecture(
        name=data["name"], title=data["title"], source=data["source"], path=path,
        softcap=float(data["softcap"]), logits_dtype=data["logits_dtype"], rope_base=float(data["rope_base"]),
        rotary_len_factor=int(data["rotary_len_factor"]), rotary_dtype=data["rotary_dtype"],
        qk_gain=float(data["qk_gain"]), mlp_ratio=int(data["mlp_ratio"]), activation=data["activation"],
        min_train_len=int(data["min_train_len"]), kv_cache_grows=bool(data["kv_cache_grows"]),
        target_depth=int(target["depth"]), target_millions=int(target["millions"]),
        features=dict(features), feature_config={k: dict(v) for k, v in data["feature_config"].items()},
        sliding_window=dict(data["sliding_window"]), value_embeddings=dict(data["value_embeddings"]),
        smear=dict(data["smear"]), backout=dict(data["backout"]), padded_vocab=dict(data["padded_vocab"]),
        init=init, replaced_components=dict(data.get("replaced", {})))
