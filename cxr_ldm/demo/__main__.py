"""`python -m cxr_ldm.demo`."""

from cxr_ldm.demo.run import main

raise SystemExit(main())
