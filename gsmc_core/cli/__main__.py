"""`python -m gsmc_core.cli` (what torchrun starts): the `gsmc` command line."""

import sys

from gsmc_core.cli import main

if __name__ == "__main__":  # importing the package's modules (as a test does) runs nothing
    sys.exit(main())
