"""``python -m tools.train --minutes 30 --out src/codelsr/models/splade-code-tiny``."""

from tools.train.train import main

raise SystemExit(main())
