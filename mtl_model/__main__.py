import sys

from mtl_model.cli import main

sys.exit(main())
