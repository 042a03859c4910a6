# The suite's pytest plugin lives in the package so that the coverage generator and the mutation
# runner share it: --gpt-impl, the `component` marker registry and the outcome recorder.
# pytester runs pytest inside the tests of the plugin itself.
pytest_plugins = ["nanochat.pytest_plugin", "pytester"]
