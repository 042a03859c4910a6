#!/usr/bin/env bash
# Install benchmark: how long does a fresh install of this project take, and how big is it?
#
# Creates a clean virtual environment in a temporary directory and times, separately:
#   1. pip install torch==2.13.0        (the CPU wheel; see the note on pinning below)
#   2. pip install -e '<repo>[test]'    (the project itself plus its test extras)
# then reports the wall time of each step and the installed size of the venv's site-packages,
# in total and for torch alone, and removes the venv again (unless --keep).
#
# Why torch is pinned: this machine's pip configuration points at a local CPU build of
# torch 2.13.0 (a "+cpu" wheel found through find-links). An unpinned `torch` could resolve to a
# newer release from the index, which on Linux is the several-GB CUDA build. `torch==2.13.0`
# matches 2.13.0+cpu (PEP 440 ignores the local label when the specifier has none), and pip
# prefers it. Override with --torch-spec if your wheel differs.
#
# pip's cache is bypassed by default (--no-cache-dir), so a second run measures the same thing
# as the first, i.e. a machine that has never installed these packages; --use-cache keeps it.
#
# Usage (from anywhere):
#   bash benchmarks/bench_install.sh                       # editable install of this checkout
#   bash benchmarks/bench_install.sh --no-editable         # a regular (built wheel) install
#   bash benchmarks/bench_install.sh --python python3.11 --torch-spec 'torch==2.13.0' --keep
#   bash benchmarks/bench_install.sh --json /tmp/install.json
#
# Exit status: non-zero when any install step fails (pip's own output is then shown).

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"
EDITABLE=1
KEEP=0
USE_CACHE=0
JSON_OUT=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) PYTHON="$2"; shift 2 ;;
        --torch-spec) TORCH_SPEC="$2"; shift 2 ;;
        --editable) EDITABLE=1; shift ;;
        --no-editable) EDITABLE=0; shift ;;
        --keep) KEEP=1; shift ;;
        --use-cache) USE_CACHE=1; shift ;;
        --json) JSON_OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 64 ;;
    esac
done

WORKDIR="$(mktemp -d -t nanochat-install-bench.XXXXXX)"
VENV="$WORKDIR/venv"
LOG="$WORKDIR/pip.log"
cleanup() {
    if [[ $KEEP -eq 1 ]]; then
        echo "venv kept at $VENV"
    else
        rm -rf "$WORKDIR"
    fi
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# sizes in MiB from `du -sk`, so they can be printed and written to JSON alike
mib() { du -sk "$@" 2>/dev/null | awk '{ s += $1 } END { printf "%.1f", s / 1024 }'; }

PIP_FLAGS=(--disable-pip-version-check)
[[ $USE_CACHE -eq 1 ]] || PIP_FLAGS+=(--no-cache-dir)

# CPU-seconds the whole machine has spent busy since boot (user nice system irq softirq steal)
machine_busy_s() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}
# CPU-seconds used so far by the finished children of this shell, from bash's `times` builtin;
# `times` must run in this shell itself (in a pipe or $(...) it would see a subshell's children)
children_cpu_s() {
    times >"$WORKDIR/times"
    awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] } printf "%.2f", s }' \
        "$WORKDIR/times"
}

# Run one pip step quietly, timing it; on failure show the tail of pip's log and stop.
# Prints "WALL_S OTHERS_PERCENT": the wall time, and how much of the machine's CPU *other*
# processes used meanwhile (a test run next door makes an install slower and its time less telling).
timed_pip() {
    local label="$1"; shift
    local t0 t1 b0 b1 c0 c1
    t0=$(now); b0=$(machine_busy_s); children_cpu_s >"$WORKDIR/c0"
    if ! "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" "$@" >>"$LOG" 2>&1; then
        echo "FAILED: $label; last lines of pip's output:" >&2
        tail -n 30 "$LOG" >&2
        return 1
    fi
    t1=$(now); b1=$(machine_busy_s); children_cpu_s >"$WORKDIR/c1"
    c0=$(<"$WORKDIR/c0"); c1=$(<"$WORKDIR/c1")
    awk -v t0="$t0" -v t1="$t1" -v b0="$b0" -v b1="$b1" -v own="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" \
        -v n="$(nproc)" \
        'BEGIN { o = (b1 - b0 - own) / ((t1 - t0) * n) * 100; if (o < 0) o = 0; printf "%.1f %.0f\n", t1 - t0, o }'
}

echo "repo:    $REPO"
echo "python:  $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
echo "venv:    $VENV (removed at the end unless --keep)"
if [[ $USE_CACHE -eq 1 ]]; then echo "pip:     cache used"; else echo "pip:     cache bypassed (--no-cache-dir)"; fi
echo

t0=$(now)
"$PYTHON" -m venv "$VENV"
T_VENV=$(elapsed "$t0" "$(now)")

echo "step 1/2: pip install $TORCH_SPEC ..."
timed_pip "install $TORCH_SPEC" "$TORCH_SPEC" >"$WORKDIR/step1" || exit 1
read -r T_TORCH O_TORCH <"$WORKDIR/step1"
# read from the package metadata: importing torch now would warn that numpy is not installed yet
TORCH_VERSION=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')

if [[ $EDITABLE -eq 1 ]]; then
    PROJECT_ARGS=(-e "$REPO[test]"); PROJECT_LABEL="pip install -e '$REPO[test]'"
else
    PROJECT_ARGS=("$REPO[test]"); PROJECT_LABEL="pip install '$REPO[test]'"
fi
echo "step 2/2: $PROJECT_LABEL ..."
timed_pip "$PROJECT_LABEL" "${PROJECT_ARGS[@]}" >"$WORKDIR/step2" || exit 1
read -r T_PROJECT O_PROJECT <"$WORKDIR/step2"

# smoke test: the installed kit loads this checkout's model and builds a tiny one
# (-I keeps the current directory off sys.path, so a checkout there cannot stand in for the install)
"$VENV/bin/python" -I - "$REPO" <<'EOF' >>"$LOG" 2>&1 \
    || { echo "FAILED: import smoke test" >&2; tail -n 20 "$LOG" >&2; exit 1; }
import sys
import torch
from nanochat_verify.contract import load_implementation
impl = load_implementation(sys.argv[1])
m = impl.GPT(impl.GPTConfig(sequence_len=8, vocab_size=32, n_layer=1, n_head=2, n_kv_head=1, n_embd=16))
assert m(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 32)
EOF

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
S_SITE=$(mib "$SITE")
S_TORCH=$(mib "$SITE/torch")
# torch's companions that ship in the same wheel (dist-info, torchgen, functorch)
S_TORCH_WHEEL=$(mib "$SITE"/torch "$SITE"/torch-*.dist-info "$SITE"/torchgen "$SITE"/functorch)
S_VENV=$(mib "$VENV")
N_PKGS=$("$VENV/bin/python" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null | wc -l)
# where the packages came from: install times mean little without it (local wheels vs the network)
N_LOCAL=$(grep -c '^Processing /' "$LOG" || true)
N_DOWNLOADED=$(grep -c '^ *Downloading ' "$LOG" || true)
T_TOTAL=$(awk -v a="$T_VENV" -v b="$T_TORCH" -v c="$T_PROJECT" 'BEGIN { printf "%.1f", a + b + c }')

echo
echo "=== install benchmark ($(nproc) cores, torch $TORCH_VERSION, $N_PKGS packages in the venv) ==="
printf '%-52s %10s %16s\n' "step" "wall s" "others' CPU %"
printf '%-52s %10s\n' "python -m venv" "$T_VENV"
printf '%-52s %10s %16s\n' "pip install $TORCH_SPEC" "$T_TORCH" "$O_TORCH"
printf '%-52s %10s %16s\n' "pip install $([[ $EDITABLE -eq 1 ]] && echo '-e ')'.[test]'" "$T_PROJECT" "$O_PROJECT"
printf '%-52s %10s\n' "total" "$T_TOTAL"
echo "(distributions taken from local disk: $N_LOCAL, downloaded: $N_DOWNLOADED)"
echo
printf '%-52s %10s\n' "installed size" "MiB"
printf '%-52s %10s\n' "site-packages, total" "$S_SITE"
printf '%-52s %10s\n' "site-packages/torch alone" "$S_TORCH"
printf '%-52s %10s\n' "torch wheel (torch, torchgen, functorch, dist-info)" "$S_TORCH_WHEEL"
printf '%-52s %10s\n' "site-packages without the torch wheel" \
    "$(awk -v a="$S_SITE" -v b="$S_TORCH_WHEEL" 'BEGIN { printf "%.1f", a - b }')"
printf '%-52s %10s\n' "whole venv" "$S_VENV"
echo "largest other entries in site-packages (MiB):"
du -sk "$SITE"/* | sort -rn | grep -v -E '/(torch|torchgen|functorch)$' | head -n 6 \
    | awk '{ n = split($2, p, "/"); printf "    %-44s %10.1f\n", p[n], $1 / 1024 }'
echo "(du -sh of site-packages: $(du -sh "$SITE" | cut -f1); of torch: $(du -sh "$SITE/torch" | cut -f1))"

if [[ -n "$JSON_OUT" ]]; then
    cat >"$JSON_OUT" <<EOF
{
  "python": "$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')",
  "torch_spec": "$TORCH_SPEC",
  "torch_version": "$TORCH_VERSION",
  "editable": $([[ $EDITABLE -eq 1 ]] && echo true || echo false),
  "pip_cache_used": $([[ $USE_CACHE -eq 1 ]] && echo true || echo false),
  "packages": $N_PKGS,
  "distributions_local": $N_LOCAL,
  "distributions_downloaded": $N_DOWNLOADED,
  "seconds": {"venv": $T_VENV, "torch": $T_TORCH, "project": $T_PROJECT, "total": $T_TOTAL},
  "other_processes_cpu_percent": {"torch": $O_TORCH, "project": $O_PROJECT},
  "mib": {"site_packages": $S_SITE, "torch_dir": $S_TORCH, "torch_wheel": $S_TORCH_WHEEL, "venv": $S_VENV}
}
EOF
    echo "numbers written to $JSON_OUT"
fi
