import sys

from distill2edge.cli.main import main

sys.exit(main())
