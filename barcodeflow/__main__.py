import sys

from barcodeflow.cli import main

sys.exit(main())
