"""``python -m tools.train --minutes 30 --out tools/train/runs/default/model`` (tools/train/README.md)."""

from tools.train.train import main

raise SystemExit(main())
