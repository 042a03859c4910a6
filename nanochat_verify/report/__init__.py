"""
COVERAGE.md from real test outcomes (`python -m nanochat_verify.report`): the checked inputs (inputs.py), the
status rules (status.py), the text (render.py), the runs it starts (run.py) and the command line (cli.py).
"""
