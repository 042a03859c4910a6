import sys

from nanochat_verify.report.cli import main

sys.exit(main())
