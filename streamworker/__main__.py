import sys

from streamworker.cli.commands import main

sys.exit(main())
