"""
Mutation testing of the suite: a catalog of deliberate bugs (catalog/, one module per component), each
applied to a copy of an implementation (mutant.py), run against the suite (runner.py), from the command line
`python -m nanochat_verify.mutation` (cli.py).
"""
