import sys

from raid.cli.main import main

sys.exit(main())
