import sys

from llara_rag.cli import main

sys.exit(main())
