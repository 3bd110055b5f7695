"""``python -m pmupart``: the command line; Ctrl-C even while it starts up is exit 130."""

import sys

try:
    from pmupart.cli import main

    main()
except KeyboardInterrupt:
    sys.stderr.write("pmupart: interrupted\n")
    sys.exit(130)
