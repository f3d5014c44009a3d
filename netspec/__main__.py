"""`python -m netspec` is the `netspec` command (also under torchrun)."""
import sys

from netspec.cli import main

sys.exit(main())
