"""`python -m freeprop.cli …` (what `accelerate launch -m` and `torchrun -m` run)."""

import sys

from freeprop.cli import main

sys.exit(main())
