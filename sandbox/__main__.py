import os

# Noted before anything else is imported (the sandbox's imports take a few hundred ms): with
# --exit-with-parent, a parent that dies before the sandbox asks the kernel to tell it is
# recognised by the sandbox having a different parent by then.
_PARENT = os.getppid()

import sys  # noqa: E402

from sandbox.runner import main  # noqa: E402

sys.exit(main(parent_pid=_PARENT))
