"""``python -m edgedistill``: the command line, also as ``torchrun ... -m edgedistill build``."""

from edgedistill.cli import main

if __name__ == "__main__":
    main()
