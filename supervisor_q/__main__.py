from supervisor_q.cli import main

raise SystemExit(main())
