from supervisor_q.cli.main import main

raise SystemExit(main())
