"""
nanochat-verify: the verification kit for nanochat-style GPT models.

It verifies an implementation (this project's `nanochat/`, a fork's, or any module of the contract) against
an architecture card, and installs beside any `nanochat` package without touching it.

- `nanochat_verify.plugin`     the pytest plugin (entry point `nanochat_verify`): --gpt-impl, --architecture,
                               components, the run record, expected findings
- `nanochat_verify.suite`      the test suite (this project's `tests/`, shipped as it is)
- `nanochat_verify.contract`   loading an implementation and its KV cache
- `nanochat_verify.card`       the architecture cards (`cards/*.toml`)
- `nanochat_verify.components` the component table
- `nanochat_verify.report`     COVERAGE.md (`python -m nanochat_verify.report`)
- `nanochat_verify.trace`      the tracer (`python -m nanochat_verify.trace`)
- `nanochat_verify.mutation`   the mutation catalog and its runner (`python -m nanochat_verify.mutation`)
- `nanochat_verify.scaling`    closed-form parameter counts and the model-scaling analysis
"""
