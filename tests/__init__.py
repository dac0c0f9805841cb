"""The test suite.

Each test process imports TensorFlow (the shared small runs train); it does so here, first, as the
commands do, so that TensorFlow's start-up lines stay off the terminal.
"""

from src.core.cli import import_tensorflow

import_tensorflow()
