"""Choose a finished run's "unsure" threshold and "not a digit" rule again, its params untouched.

    python scripts/fit_doubts.py                 # the bundled run (mnist_jax/weights/notebook)
    python scripts/fit_doubts.py runs/my-run     # a run trained before the rule existed

A run that finishes chooses both itself (mnist_jax/apps/novelty.py); this gives one to a run written
before. It writes novelty.msgpack beside the params and the new thresholds into history.json, and
prints how they were chosen. For the bundled run on 2 AMD EPYC (Zen 4) cores: about 20 s, and
"1.8% of the test set's odd-numbered examples called unsure or not a digit".
"""

from __future__ import annotations

import argparse
import sys

from mnist_jax.config import RunOptions
from mnist_jax.errors import UserError
from mnist_jax.run import environment, experiment, rundir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default=rundir.BUNDLED_RUN, help="a finished run (default: the bundled one)")
    parser.add_argument("--data-dir", default=None, help="the TFDS data dir (default: TFDS's)")
    args = parser.parse_args()
    environment.configure()
    try:
        rule = experiment.refit_doubts(args.run_dir, RunOptions(data_dir=args.data_dir))
    except UserError as e:
        print(f"fit_doubts.py: error: {e}", file=sys.stderr)
        return 2
    print(f"{rule['unsure_share_reported']:.1%} of {rule['reported_on']} called unsure or not a digit "
          f"(thresholds chosen on {rule['chosen_on']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
