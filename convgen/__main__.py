"""`python -m convgen ...` is the `convgen` command."""
import sys

from .cli import main

sys.exit(main())
