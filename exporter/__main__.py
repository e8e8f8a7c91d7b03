"""`python -m exporter` runs the exporter."""

import sys

from exporter.app.main import main

if __name__ == "__main__":
    sys.exit(main())
