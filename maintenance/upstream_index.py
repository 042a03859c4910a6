"""
Writes nanochat_verify/cards/upstream.json, the index the kit finds a checkout's base with
(nanochat_verify/base.py), from the real nanochat beside the checkout (../shared/upstream: commits.tsv and
one folder per version that changed gpt.py). The index holds facts only, no code: every upstream commit with
its date, the git blob hash of its nanochat/gpt.py and the card of the architecture it has (the newest
version with a card at or before it), and, per version with a card, hashes of the lines of its gpt.py
(stored as the lines each version adds and removes), so that a checkout without history can be matched by
its code.

    python maintenance/upstream_index.py            # write the index
    python maintenance/upstream_index.py --check    # exit 1, with a diff summary, if the index is out of date
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from nanochat_verify.base import INDEX, line_hashes  # noqa: E402

UPSTREAM = ROOT.parent / "shared" / "upstream"


def build(upstream):
    rows = [line.split("\t") for line in (upstream / "commits.tsv").read_text().splitlines()[1:] if line.strip()]
    versions = [p.name.removeprefix("nanochat-") for p in upstream.glob("nanochat-*") if (p / "nanochat" / "gpt.py").is_file()]
    by_prefix = {v: next(r for r in rows if r[0].startswith(v)) for v in versions}
    order = sorted(versions, key=lambda v: rows.index(by_prefix[v]))  # the order of upstream's history
    blob_of = {by_prefix[v][3]: v for v in order}
    commits, current = {}, None
    for commit, date, _changed, blob, *_ in rows:
        if blob in blob_of:
            current = blob_of[blob]
        commits[commit] = [date, blob, current]
    lines, previous = {}, Counter()
    for v in order:
        now = Counter(line_hashes((upstream / f"nanochat-{v}" / "nanochat" / "gpt.py").read_text()))
        lines[v] = {"+": sorted((now - previous).elements()), "-": sorted((previous - now).elements())}
        previous = now
    return {"about": "upstream karpathy/nanochat: commits (date, gpt.py blob, card version) and, per card version, "
                     "the hashes of the lines its gpt.py adds and removes (maintenance/upstream_index.py)",
            "versions": order, "commits": commits, "lines": lines}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--check", action="store_true", help="compare with the shipped index instead of writing it")
    args = parser.parse_args(argv)
    if not (UPSTREAM / "commits.tsv").is_file():
        print(f"upstream_index: {UPSTREAM} has no commits.tsv (the real nanochat is test data beside the checkout)",
              file=sys.stderr)
        return 2
    text = json.dumps(build(UPSTREAM), indent=0, sort_keys=True) + "\n"
    if args.check:
        if INDEX.is_file() and INDEX.read_text() == text:
            print(f"{INDEX.relative_to(ROOT)} is up to date.", file=sys.stderr)
            return 0
        print(f"{INDEX.relative_to(ROOT)} is out of date; run `python maintenance/upstream_index.py`", file=sys.stderr)
        return 1
    INDEX.write_text(text)
    print(f"wrote {INDEX.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
