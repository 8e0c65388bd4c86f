from evals.swe_lite.run import main

raise SystemExit(main())
