import sys

from nanochat_verify.trace.cli import main

sys.exit(main())
