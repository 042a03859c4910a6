# The suite's plugin is loaded by pyproject.toml's addopts (-p nanochat_verify.plugin) or, where the kit is
# installed, by its entry point. pytester runs pytest inside the tests of the kit's own tools.
pytest_plugins = ["pytester"]
