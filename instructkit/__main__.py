import sys

from instructkit.cli import main

sys.exit(main())
