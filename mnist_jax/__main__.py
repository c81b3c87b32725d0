"""`python -m mnist_jax COMMAND ...`, the same as the `mnist-jax` command."""

import sys

from mnist_jax.cli import main

sys.exit(main())
