import sys

from sandbox.runner import main

sys.exit(main())
