"""The test suite.

Every process that runs tests imports TensorFlow first, as the commands do, so that its start-up lines
stay off the terminal: `conftest.pytest_configure` in pytest's processes (not in xdist's controller,
which only hands the tests out), `device_runs.main`, `limited_memory.main` and `signal_runs.main` in their own.
"""
