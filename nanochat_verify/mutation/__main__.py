import sys

from nanochat_verify.mutation.cli import main

sys.exit(main())
