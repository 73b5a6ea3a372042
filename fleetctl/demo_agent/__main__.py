import sys

from fleetctl.demo_agent.agent import main

sys.exit(main())
