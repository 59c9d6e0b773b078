import sys

from barcodeflow.stack.cli import main

sys.exit(main())
