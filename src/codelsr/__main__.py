from codelsr.cli import main

raise SystemExit(main())
