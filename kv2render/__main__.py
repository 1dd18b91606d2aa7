from kv2render.cli import main

raise SystemExit(main())
