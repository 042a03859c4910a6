# The suite's pytest plugin lives in the package so that the coverage generator and the mutation
# runner share it: --gpt-impl, the `component` marker registry and the outcome recorder.
pytest_plugins = ["nanochat.pytest_plugin"]
