import sys

from instructkit.cli import console

sys.exit(console())
