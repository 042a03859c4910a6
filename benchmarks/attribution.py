"""
Precise attribution: a change to one component turns that component's row red and no other.

Each change below is applied to a copy of nanochat/gpt.py, the whole suite runs against the copy
(`pytest --gpt-impl COPY --with-extras`), and the rows of the component table whose tests failed are
listed. A change that reddens rows beyond its own shows a test that reaches too far. The supporting
areas are listed apart: the oracle (contract.oracle) compares the whole model with the independent
reference, so any change to the architecture of gpt.py alone fails it, by design.

    python benchmarks/attribution.py              # every change, one after the other
    python benchmarks/attribution.py --only softcap_30 --keep /tmp/attribution

Not a test: it runs the suite once per change (minutes), and its result is a table to read.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nanochat_verify.components import COMPONENTS, component_of  # noqa: E402
from nanochat_verify.mutation.runner import write_copy  # noqa: E402
from nanochat_verify.paths import OWN_MODEL  # noqa: E402

TABLE_ROWS = {c.key for c in COMPONENTS}  # rows 1-18; the rest are the supporting areas (oracle, inference, tools)

# (name, what it changes, the row it belongs to, [(old, new) exact edits of nanochat/gpt.py])
CHANGES = [
    ("new_scalar_parameter", "a new learnable scalar scaling the embedding (init 1.0, in init_weights)", "embedding",
     [("        x = self.transformer.wte(idx)  # (B, T, C)\n",
       "        x = self.transformer.wte(idx) * self.embedding_scale  # (B, T, C)\n"),
      ("        self.lm_head = nn.Linear(config.n_embd, V, bias=False)  # untied from wte\n",
       "        self.lm_head = nn.Linear(config.n_embd, V, bias=False)  # untied from wte\n"
       "        self.embedding_scale = nn.Parameter(torch.ones(1))\n"),
      ("        self._init_modern_components()\n",
       "        self._init_modern_components()\n        nn.init.ones_(self.embedding_scale)\n")]),
    ("softcap_30", "LOGIT_SOFTCAP 30 in gpt.py, the card still says 15", "lm_head",
     [("LOGIT_SOFTCAP = 15.0", "LOGIT_SOFTCAP = 30.0")]),
    ("short_window_a_half", "the short window a half of the context instead of a quarter", "sliding_window",
     [("-(-self.sequence_len // 4 // 128) * 128", "-(-self.sequence_len // 2 // 128) * 128")]),
    ("c_fc_uniform_init", "c_fc drawn uniform (same std) instead of normal", "mlp",
     [("                nn.init.normal_(module.weight, mean=0.0, std=std)\n",
       "                if module.weight.shape[0] == 4 * module.weight.shape[1]:  # c_fc\n"
       "                    nn.init.uniform_(module.weight, -std * 3 ** 0.5, std * 3 ** 0.5)\n"
       "                else:\n"
       "                    nn.init.normal_(module.weight, mean=0.0, std=std)\n")]),
    ("rope_base_100k", "RoPE base 100,000 in gpt.py, the card still says 10,000", "rope",
     [("ROPE_BASE = 10000", "ROPE_BASE = 100000")]),
    ("ve_gate_scale_2", "value-embedding gate 2 * sigmoid instead of 3 * sigmoid", "value_embeddings",
     [("VE_GATE_CHANNELS, VE_GATE_SCALE = 12, 3.0", "VE_GATE_CHANNELS, VE_GATE_SCALE = 12, 2.0")]),
]


def failing_rows(outcomes):
    rows = {}
    for nodeid, test in outcomes["tests"].items():
        if test["outcome"] in ("failed", "error"):
            for sub in test["components"]:
                rows.setdefault(component_of(sub).key, []).append(nodeid)
    return rows


def run(change, workdir):
    name, _, _, edits = change
    source = OWN_MODEL.read_text()
    for old, new in edits:
        assert source.count(old) == 1, f"{name}: the text to change is not in gpt.py exactly once: {old!r}"
        source = source.replace(old, new)
    copy = write_copy(workdir, name, source, OWN_MODEL)  # a package of its own: its nanochat.engine resolves
    outcomes = workdir / f"{name}.json"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "--no-cov",
                    f"--gpt-impl={copy}", "--with-extras", f"--outcomes={outcomes}"],
                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800,
                   env=dict(os.environ, COVERAGE_FILE=str(workdir / ".coverage")))
    return failing_rows(json.loads(outcomes.read_text()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--only", help="comma-separated change names")
    parser.add_argument("--keep", type=Path, help="keep the copies and outcomes in this folder")
    args = parser.parse_args()
    changes = [c for c in CHANGES if not args.only or c[0] in args.only.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print("| change | its row | table rows that turned red | supporting areas that failed | precise |")
        print("|---|---|---|---|---|")
        for change in changes:
            failed = run(change, workdir)
            rows = {k: v for k, v in failed.items() if k in TABLE_ROWS}
            areas = {k: v for k, v in failed.items() if k not in TABLE_ROWS}

            def cell(d):
                return ", ".join(f"{k} ({len(v)} tests)" for k, v in sorted(d.items())) or "none"
            print(f"| {change[1]} | {change[2]} | {cell(rows)} | {cell(areas)} | "
                  f"{'yes' if set(rows) == {change[2]} else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
